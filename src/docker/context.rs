//! The Docker build context: the embedded `docker/` directory, or another directory given with
//! `--docker-context`, packed as a deterministic tar (sorted entries, zero mtimes and owners) so
//! its digest names the image and Docker's layer cache keeps working across runs.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

/// The build image definition embedded in the binary (`docker/Dockerfile`).
pub const EMBEDDED_DOCKERFILE: &str = include_str!("../../docker/Dockerfile");

/// Repository of the images slurm-factory builds; the tag is the context digest.
pub const IMAGE_REPOSITORY: &str = "slurm-factory-build";

/// A packed build context.
#[derive(Clone)]
pub struct BuildContext {
    tar: Vec<u8>,
    digest: String,
    dockerfile: String,
    origin: String,
}

impl std::fmt::Debug for BuildContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuildContext")
            .field("origin", &self.origin)
            .field("digest", &self.digest)
            .field("bytes", &self.tar.len())
            .finish()
    }
}

impl BuildContext {
    /// The embedded `docker/` context.
    pub fn embedded() -> Result<BuildContext> {
        let files = vec![(
            PathBuf::from("Dockerfile"),
            EMBEDDED_DOCKERFILE.as_bytes().to_vec(),
            0o644,
        )];
        Self::pack(files, "the embedded docker/ directory".to_owned())
    }

    /// The context at `dir` (which must hold a `Dockerfile`).
    pub fn from_dir(dir: &Path) -> Result<BuildContext> {
        let dockerfile = dir.join("Dockerfile");
        if !dockerfile.is_file() {
            bail!(
                "--docker-context {}: there is no Dockerfile in that directory; point it at a directory laid out like the project's docker/",
                dir.display()
            );
        }
        let mut files = Vec::new();
        collect(dir, dir, &mut files)?;
        Self::pack(files, dir.display().to_string())
    }

    /// `dir` when given, else the embedded context.
    pub fn load(dir: Option<&Path>) -> Result<BuildContext> {
        match dir {
            Some(d) => Self::from_dir(d),
            None => Self::embedded(),
        }
    }

    fn pack(mut files: Vec<(PathBuf, Vec<u8>, u32)>, origin: String) -> Result<BuildContext> {
        files.sort_by(|a, b| a.0.cmp(&b.0));
        let mut builder = tar::Builder::new(Vec::new());
        let mut dockerfile = None;
        for (path, data, mode) in &files {
            if path == Path::new("Dockerfile") {
                dockerfile = Some(String::from_utf8_lossy(data).into_owned());
            }
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(*mode);
            header.set_mtime(0);
            header.set_uid(0);
            header.set_gid(0);
            header.set_entry_type(tar::EntryType::Regular);
            builder
                .append_data(&mut header, path, data.as_slice())
                .with_context(|| {
                    format!("cannot pack {} into the build context", path.display())
                })?;
        }
        let tar = builder
            .into_inner()
            .context("cannot finish the build context tar")?;
        let digest = hex::encode(Sha256::digest(&tar));
        Ok(BuildContext {
            tar,
            digest,
            dockerfile: dockerfile.unwrap_or_default(),
            origin,
        })
    }

    /// The tar bytes.
    pub fn tar(&self) -> &[u8] {
        &self.tar
    }

    /// SHA-256 of the tar, hex.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// The image tag for this context: `slurm-factory-build:<first 16 hex of the digest>`.
    pub fn image_tag(&self) -> String {
        format!("{IMAGE_REPOSITORY}:{}", &self.digest[..16])
    }

    /// The Dockerfile text.
    pub fn dockerfile(&self) -> &str {
        &self.dockerfile
    }

    /// Where the context came from, for messages.
    pub fn origin(&self) -> &str {
        &self.origin
    }
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>, u32)>) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read the build context directory {}", dir.display()))?;
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        let meta =
            std::fs::metadata(&path).with_context(|| format!("cannot read {}", path.display()))?;
        if meta.is_dir() {
            collect(root, &path, out)?;
        } else if meta.is_file() {
            let rel = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
            let data =
                std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
            let mode = if meta.permissions().mode() & 0o111 != 0 {
                0o755
            } else {
                0o644
            };
            out.push((rel, data, mode));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contexts_are_deterministic_and_tagged_by_content() {
        let a = BuildContext::embedded().unwrap();
        let b = BuildContext::embedded().unwrap();
        assert_eq!(a.digest(), b.digest());
        assert!(a.image_tag().starts_with("slurm-factory-build:"));
        assert!(a.dockerfile().contains("FROM ubuntu:24.04@sha256:"));

        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("Dockerfile"), "FROM scratch\n").unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        std::fs::write(d.path().join("sub/x"), "1").unwrap();
        let c1 = BuildContext::from_dir(d.path()).unwrap();
        std::fs::write(d.path().join("sub/x"), "2").unwrap();
        let c2 = BuildContext::from_dir(d.path()).unwrap();
        assert_ne!(c1.image_tag(), c2.image_tag());
        let names: Vec<String> = tar::Archive::new(c2.tar())
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["Dockerfile", "sub/x"]);
    }

    #[test]
    fn a_context_without_dockerfile_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let err = BuildContext::from_dir(d.path()).unwrap_err().to_string();
        assert!(err.contains("no Dockerfile"), "{err}");
    }
}
