//! The Docker build context: the embedded `docker/` directory, or another directory given with
//! `--docker-context`, packed as a deterministic tar (sorted entries, zero mtimes and owners) so
//! its digest names the image and Docker's layer cache keeps working across runs.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use crate::catalog::{Platform, PlatformName};

/// The build image definitions embedded in the binary, one per catalog platform:
/// `docker/<platform>/Dockerfile`.
pub const EMBEDDED_DOCKERFILES: &[(&str, &str)] = &[
    ("el8", include_str!("../../docker/el8/Dockerfile")),
    ("el9", include_str!("../../docker/el9/Dockerfile")),
    (
        "ubuntu24.04",
        include_str!("../../docker/ubuntu24.04/Dockerfile"),
    ),
];

/// The embedded Dockerfile of `platform`, if the binary has one.
pub fn embedded_dockerfile(platform: &PlatformName) -> Option<&'static str> {
    EMBEDDED_DOCKERFILES
        .iter()
        .find(|(p, _)| *p == platform.0)
        .map(|(_, d)| *d)
}

/// The `image@sha256:…` digest of a Dockerfile's first `FROM` line, if it names one.
pub fn from_digest(dockerfile: &str) -> Option<&str> {
    let from = dockerfile
        .lines()
        .map(str::trim)
        .find(|l| l.get(..5).is_some_and(|w| w.eq_ignore_ascii_case("FROM ")))?;
    let image = from[5..].split_whitespace().next()?;
    image.split_once('@').map(|(_, d)| d)
}

/// The variable that names a custom image context for every step of a runner (as
/// `--docker-context` does for one command).
pub const DOCKER_CONTEXT_ENV: &str = "SLURM_FACTORY_DOCKER_CONTEXT";

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
    /// The embedded `docker/<platform>/` context. Refused when the catalog records no image
    /// digest for the platform, when the binary has no Dockerfile for it, or when the
    /// Dockerfile's `FROM` digest is not the catalog's (a `--catalog` that re-pins the image
    /// needs a `--docker-context` that builds from it).
    pub fn embedded(platform: &Platform) -> Result<BuildContext> {
        let pinned = platform.pinned_image()?;
        let Some(dockerfile) = embedded_dockerfile(&platform.name) else {
            bail!(
                "this binary has no build image for platform {} (it embeds {}): pass --docker-context <dir> with a Dockerfile that builds FROM {pinned}",
                platform.name,
                EMBEDDED_DOCKERFILES
                    .iter()
                    .map(|(p, _)| *p)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        };
        let want = platform.digest.as_deref().unwrap_or_default();
        if from_digest(dockerfile) != Some(want) {
            bail!(
                "the embedded docker/{}/Dockerfile builds FROM {}, but the catalog pins {pinned} for platform {}: use the catalog this binary embeds, or pass --docker-context <dir> with a Dockerfile FROM {pinned}",
                platform.name,
                from_digest(dockerfile).unwrap_or("an image without a digest"),
                platform.name
            );
        }
        let files = vec![(
            PathBuf::from("Dockerfile"),
            dockerfile.as_bytes().to_vec(),
            0o644,
        )];
        Self::pack(
            files,
            format!("the embedded docker/{}/ directory", platform.name),
        )
    }

    /// The context at `dir` (which must hold a `Dockerfile`).
    pub fn from_dir(dir: &Path) -> Result<BuildContext> {
        Self::pack(dir_files(dir)?, dir.display().to_string())
    }

    /// The context of `platform`: with `dir`, the directory [`context_dir`] picks; without,
    /// the embedded one ([`BuildContext::embedded`]). A platform without a recorded image
    /// digest is refused either way.
    pub fn load(dir: Option<&Path>, platform: &Platform) -> Result<BuildContext> {
        platform.pinned_image()?;
        match dir {
            Some(d) => Self::from_dir(&context_dir(d, &platform.name)),
            None => Self::embedded(platform),
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

/// The directory a `--docker-context <dir>` builds `platform` from: `dir/<platform>/` when it
/// holds a Dockerfile (a directory laid out like the project's docker/), else `dir` itself.
pub fn context_dir(dir: &Path, platform: &PlatformName) -> PathBuf {
    let sub = dir.join(&platform.0);
    if sub.join("Dockerfile").is_file() {
        sub
    } else {
        dir.to_owned()
    }
}

/// The files a build of `platform` packs from `--docker-context <dir>` (relative path, bytes
/// and mode, sorted by path): what the leg's fingerprint hashes as its `docker` ingredient.
pub fn context_files(dir: &Path, platform: &PlatformName) -> Result<Vec<(PathBuf, Vec<u8>, u32)>> {
    dir_files(&context_dir(dir, platform))
}

/// Every file of the context directory `dir` (which must hold a `Dockerfile`), sorted.
fn dir_files(dir: &Path) -> Result<Vec<(PathBuf, Vec<u8>, u32)>> {
    if !dir.join("Dockerfile").is_file() {
        bail!(
            "--docker-context {}: there is no Dockerfile in that directory; point it at a directory laid out like the project's docker/",
            dir.display()
        );
    }
    let mut files = Vec::new();
    collect(dir, dir, &mut files)?;
    files.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(files)
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

    fn platform(name: &str) -> Platform {
        crate::catalog::Catalog::embedded()
            .platform_named(name)
            .unwrap()
            .clone()
    }

    #[test]
    fn contexts_are_deterministic_and_tagged_by_content() {
        let a = BuildContext::embedded(&platform("el8")).unwrap();
        let b = BuildContext::embedded(&platform("el8")).unwrap();
        assert_eq!(a.digest(), b.digest());
        assert!(a.image_tag().starts_with("slurm-factory-build:"));
        assert!(
            a.dockerfile()
                .contains("FROM docker.io/rockylinux/rockylinux:8@sha256:")
        );
        assert_eq!(a.origin(), "the embedded docker/el8/ directory");
        let u = BuildContext::embedded(&platform("ubuntu24.04")).unwrap();
        assert!(u.dockerfile().contains("FROM ubuntu:24.04@sha256:"));
        assert_ne!(a.image_tag(), u.image_tag());

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

    /// Every catalog platform has an embedded Dockerfile whose `FROM` digest is the catalog's,
    /// and every one pins the same Spack and spack-packages commits: a bump of one without the
    /// other fails here.
    #[test]
    fn every_platform_builds_from_the_catalogs_digest_with_the_same_spack() {
        let c = crate::catalog::Catalog::embedded();
        let mut pins = std::collections::BTreeSet::new();
        for p in &c.platforms.images {
            let d = embedded_dockerfile(&p.name)
                .unwrap_or_else(|| panic!("no docker/{}/Dockerfile embedded", p.name));
            assert_eq!(
                from_digest(d),
                p.digest.as_deref(),
                "docker/{}/Dockerfile's FROM digest is not catalog.yaml's",
                p.name
            );
            let args: Vec<&str> = d.lines().filter(|l| l.starts_with("ARG SPACK_")).collect();
            assert_eq!(args.len(), 2, "{}: {args:?}", p.name);
            pins.insert(args.join("\n"));
            // The image the build runs is the platform's: its label says so.
            assert!(
                d.contains(&format!("io.slurm-factory.platform=\"{}\"", p.name)),
                "{}",
                p.name
            );
        }
        assert_eq!(
            pins.len(),
            1,
            "the Dockerfiles pin different Spack commits: {pins:?}"
        );
        assert_eq!(
            EMBEDDED_DOCKERFILES.len(),
            c.platforms.images.len(),
            "a Dockerfile for a platform the catalog lacks"
        );
    }

    #[test]
    fn a_platform_without_a_digest_or_with_another_one_is_refused() {
        let mut p = platform("el9");
        p.digest = None;
        let err = BuildContext::load(None, &p).unwrap_err().to_string();
        assert!(
            err.contains("platform el9 (Rocky Linux 9) has no image digest"),
            "{err}"
        );
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("Dockerfile"), "FROM scratch\n").unwrap();
        let err = BuildContext::load(Some(d.path()), &p)
            .unwrap_err()
            .to_string();
        assert!(err.contains("has no image digest"), "{err}");

        let mut p = platform("el8");
        p.digest = Some(format!("sha256:{}", "0".repeat(64)));
        let err = BuildContext::embedded(&p).unwrap_err().to_string();
        assert!(
            err.contains("the embedded docker/el8/Dockerfile builds FROM sha256:e8a49c54")
                && err.contains("--docker-context"),
            "{err}"
        );
        let mut p = platform("el8");
        p.name = PlatformName("sles15".into());
        let err = BuildContext::embedded(&p).unwrap_err().to_string();
        assert!(err.contains("no build image for platform sles15"), "{err}");
    }

    #[test]
    fn a_context_directory_laid_out_like_docker_gives_each_platform_its_own() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("Dockerfile"), "FROM scratch\n").unwrap();
        std::fs::create_dir(d.path().join("el8")).unwrap();
        std::fs::write(
            d.path().join("el8/Dockerfile"),
            "FROM scratch\nLABEL p=el8\n",
        )
        .unwrap();
        let el8 = BuildContext::load(Some(d.path()), &platform("el8")).unwrap();
        assert!(el8.dockerfile().contains("p=el8"));
        assert!(el8.origin().ends_with("/el8"), "{}", el8.origin());
        let el9 = BuildContext::load(Some(d.path()), &platform("el9")).unwrap();
        assert_eq!(el9.dockerfile(), "FROM scratch\n");
        // The checkout's docker/ directory is such a directory.
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docker");
        for p in ["el8", "el9", "ubuntu24.04"] {
            let from_dir = BuildContext::load(Some(&root), &platform(p)).unwrap();
            let embedded = BuildContext::embedded(&platform(p)).unwrap();
            assert_eq!(from_dir.digest(), embedded.digest(), "{p}");
        }
    }

    #[test]
    fn from_digests_are_read_off_the_first_from_line() {
        assert_eq!(
            from_digest("# x\nfrom a:1@sha256:ab AS b\nFROM c@sha256:cd\n"),
            Some("sha256:ab")
        );
        assert_eq!(from_digest("FROM a:1\n"), None);
        assert_eq!(from_digest("RUN x\n"), None);
    }

    #[test]
    fn a_context_without_dockerfile_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let err = BuildContext::from_dir(d.path()).unwrap_err().to_string();
        assert!(err.contains("no Dockerfile"), "{err}");
    }
}
