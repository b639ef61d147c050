//! What a finished (or failed) build leaves behind: which packages were built from source and
//! which were reused from a buildcache, and the debug bundle of a failed build.
//!
//! Both are read from the host side of the namespace's mounts after the container is gone.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

/// One installed package.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Installed {
    /// Package name.
    pub name: String,
    /// Version.
    pub version: String,
}

impl std::fmt::Display for Installed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.name, self.version)
    }
}

/// Packages of an install tree, split by origin.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstallCensus {
    /// Built from source in this build.
    pub built: Vec<Installed>,
    /// Installed from a buildcache (their prefix carries `.spack/binary_distribution`).
    pub reused: Vec<Installed>,
}

/// Timing of one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepTime {
    /// The step name.
    pub name: String,
    /// How long it ran.
    pub duration: Duration,
}

/// Statistics of a build.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildStats {
    /// Built vs reused packages.
    pub census: InstallCensus,
    /// Per-step timings.
    pub steps: Vec<StepTime>,
    /// Wall-clock time of the whole build, image build included.
    pub total: Duration,
}

/// Deepest directory level searched below an install root (padding adds several levels).
const MAX_DEPTH: usize = 16;

/// Lists the packages of the install tree at `root`: every directory holding
/// `.spack/spec.json` is one prefix.
pub(crate) fn census(root: &Path) -> Result<InstallCensus> {
    let mut out = InstallCensus::default();
    if root.is_dir() {
        walk_prefixes(root, 0, &mut out)?;
    }
    out.built.sort();
    out.reused.sort();
    Ok(out)
}

fn walk_prefixes(dir: &Path, depth: usize, out: &mut InstallCensus) -> Result<()> {
    let meta = dir.join(".spack");
    let spec = meta.join("spec.json");
    if spec.is_file() {
        let pkg = read_spec(&spec, dir);
        if meta.join("binary_distribution").exists() {
            out.reused.push(pkg);
        } else {
            out.built.push(pkg);
        }
        return Ok(());
    }
    if depth >= MAX_DEPTH {
        return Ok(());
    }
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        let ft = entry.file_type()?;
        if ft.is_dir() && entry.file_name() != ".spack-db" {
            walk_prefixes(&entry.path(), depth + 1, out)?;
        }
    }
    Ok(())
}

fn read_spec(spec: &Path, prefix: &Path) -> Installed {
    let parsed = std::fs::read_to_string(spec)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
    let node = parsed
        .as_ref()
        .and_then(|v| v.pointer("/spec/nodes/0"))
        .cloned();
    let get = |k: &str| {
        node.as_ref()
            .and_then(|n| n.get(k))
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };
    match (get("name"), get("version")) {
        (Some(name), Some(version)) => Installed { name, version },
        _ => Installed {
            name: prefix
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            version: "?".to_owned(),
        },
    }
}

/// The files a failed Spack build leaves in its stage that explain the failure.
pub(crate) const DEBUG_FILES: &[&str] =
    &["spack-build-out.txt", "spack-build-env.txt", "config.log"];

/// Largest single file copied into a debug bundle.
const MAX_DEBUG_FILE: u64 = 64 * 1024 * 1024;

/// Copies every [`DEBUG_FILES`] file found under `stage` into `bundle`, keeping the path below
/// `stage` (so each failed package gets its own directory), plus `extra` files by name.
/// Returns the copied files.
pub(crate) fn collect_debug_bundle(
    stage: &Path,
    bundle: &Path,
    extra: &[(&str, &Path)],
) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(bundle)
        .with_context(|| format!("cannot create the debug bundle {}", bundle.display()))?;
    let mut found = Vec::new();
    if stage.is_dir() {
        find_named(stage, 0, &mut found)?;
    }
    let mut copied = Vec::new();
    for src in found {
        let rel = src.strip_prefix(stage).unwrap_or(&src);
        let dst = bundle.join("stage").join(rel);
        if let Some(p) = dst.parent() {
            std::fs::create_dir_all(p)?;
        }
        copy_capped(&src, &dst)?;
        copied.push(dst);
    }
    for (name, src) in extra {
        if src.is_file() {
            let dst = bundle.join(name);
            copy_capped(src, &dst)?;
            copied.push(dst);
        }
    }
    copied.sort();
    Ok(copied)
}

fn copy_capped(src: &Path, dst: &Path) -> Result<()> {
    let len = std::fs::metadata(src)?.len();
    if len <= MAX_DEBUG_FILE {
        std::fs::copy(src, dst)
            .with_context(|| format!("cannot copy {} to {}", src.display(), dst.display()))?;
    } else {
        // Keep the end: that is where the error is.
        use std::io::{Read, Seek, SeekFrom};
        let mut f = std::fs::File::open(src)?;
        f.seek(SeekFrom::Start(len - MAX_DEBUG_FILE))?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)?;
        let mut text = format!(
            "[slurm-factory: {} was {len} bytes; only its last {MAX_DEBUG_FILE} bytes are kept]\n",
            src.display()
        )
        .into_bytes();
        text.extend(buf);
        std::fs::write(dst, text)?;
    }
    Ok(())
}

fn find_named(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) -> Result<()> {
    if depth > MAX_DEPTH {
        return Ok(());
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let Ok(ft) = entry.file_type() else { continue };
        let path = entry.path();
        if ft.is_dir() {
            find_named(&path, depth + 1, out)?;
        } else if ft.is_file()
            && DEBUG_FILES
                .iter()
                .any(|n| entry.file_name().to_str() == Some(n))
        {
            out.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(root: &Path, rel: &str, name: &str, binary: bool) {
        let meta = root.join(rel).join(".spack");
        std::fs::create_dir_all(&meta).unwrap();
        std::fs::write(
            meta.join("spec.json"),
            format!(r#"{{"spec":{{"_meta":{{"version":5}},"nodes":[{{"name":"{name}","version":"1.2"}}]}}}}"#),
        )
        .unwrap();
        if binary {
            std::fs::write(meta.join("binary_distribution"), "").unwrap();
        }
    }

    #[test]
    fn census_splits_built_and_reused() {
        let d = tempfile::tempdir().unwrap();
        prefix(
            d.path(),
            "__pad__/__pad__/linux-x86_64_v2/slurm-1.2-abc",
            "slurm",
            false,
        );
        prefix(
            d.path(),
            "__pad__/__pad__/linux-x86_64_v2/munge-1.2-def",
            "munge",
            true,
        );
        prefix(
            d.path(),
            "__pad__/__pad__/linux-x86_64_v2/gcc-1.2-ghi",
            "gcc",
            true,
        );
        let c = census(d.path()).unwrap();
        assert_eq!(
            c.built.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
            ["slurm@1.2"]
        );
        assert_eq!(
            c.reused.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
            ["gcc@1.2", "munge@1.2"]
        );
        assert_eq!(
            census(&d.path().join("missing")).unwrap(),
            InstallCensus::default()
        );
    }

    #[test]
    fn debug_bundle_keeps_stage_paths() {
        let d = tempfile::tempdir().unwrap();
        let stage = d.path().join("stage");
        let s = stage.join("spack-stage-slurm-1-abc");
        std::fs::create_dir_all(s.join("spack-src")).unwrap();
        std::fs::write(s.join("spack-build-out.txt"), "boom").unwrap();
        std::fs::write(s.join("spack-build-env.txt"), "X=1").unwrap();
        std::fs::write(s.join("spack-src/config.log"), "configure: error").unwrap();
        std::fs::write(s.join("spack-src/other.txt"), "no").unwrap();
        let log = d.path().join("build.log");
        std::fs::write(&log, "log").unwrap();
        let bundle = d.path().join("debug");
        let got = collect_debug_bundle(&stage, &bundle, &[("build.log", &log)]).unwrap();
        assert_eq!(got.len(), 4);
        assert_eq!(
            std::fs::read_to_string(
                bundle.join("stage/spack-stage-slurm-1-abc/spack-src/config.log")
            )
            .unwrap(),
            "configure: error"
        );
        assert!(
            !bundle
                .join("stage/spack-stage-slurm-1-abc/spack-src/other.txt")
                .exists()
        );
    }
}
