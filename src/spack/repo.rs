//! The `slurm_factory` Spack package repository (`spack-repo/` in the source tree), embedded in
//! the binary so a build needs nothing but the binary and a Docker engine.

use std::path::Path;

use anyhow::{Context, Result};

/// The repository directory (holding `repo.yaml`) relative to the `spack-repo/` root.
pub const REPO_SUBDIR: &str = "spack_repo/slurm_factory";

/// Every file of the repository: (path relative to `spack-repo/`, contents).
pub const FILES: &[(&str, &str)] = &[
    (
        "spack_repo/slurm_factory/repo.yaml",
        include_str!("../../spack-repo/spack_repo/slurm_factory/repo.yaml"),
    ),
    (
        "spack_repo/slurm_factory/__init__.py",
        include_str!("../../spack-repo/spack_repo/slurm_factory/__init__.py"),
    ),
    (
        "spack_repo/slurm_factory/packages/slurm/package.py",
        include_str!("../../spack-repo/spack_repo/slurm_factory/packages/slurm/package.py"),
    ),
    (
        "spack_repo/slurm_factory/packages/gcc/package.py",
        include_str!("../../spack-repo/spack_repo/slurm_factory/packages/gcc/package.py"),
    ),
    (
        "spack_repo/slurm_factory/packages/s2n_tls/package.py",
        include_str!("../../spack-repo/spack_repo/slurm_factory/packages/s2n_tls/package.py"),
    ),
];

/// Writes the repository under `dir` (the `spack-repo/` root).
pub fn write_to(dir: &Path) -> Result<()> {
    for (rel, text) in FILES {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}
