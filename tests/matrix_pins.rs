//! The guard of the build matrix that CI can run: the catalog names only versions the pinned
//! spack-packages commit has (or `spack-repo` adds), and the recorded version lists
//! (`spack-repo/pins/`, extracted by `scripts/check-matrix --pins` with real Spack) are those
//! of the commit the Dockerfile pins. `docs/matrix.md`, the concretization of every cell, was
//! produced with the same pins.

mod common;

use std::path::PathBuf;

use common::repo_root;
use slurm_factory::catalog::Catalog;
use slurm_factory::spack::pins::{Pins, check_catalog, dockerfile_pin};

fn pins_dir() -> PathBuf {
    repo_root().join("spack-repo/pins")
}

/// The one recorded pins file, checked against the Dockerfile's pin.
fn pins() -> Pins {
    let dockerfile = std::fs::read_to_string(repo_root().join("docker/Dockerfile")).unwrap();
    let pin = dockerfile_pin(&dockerfile).unwrap();
    let files: Vec<PathBuf> = std::fs::read_dir(pins_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let wanted = pins_dir().join(format!("spack-packages-{pin}.json"));
    assert!(
        files.contains(&wanted),
        "docker/Dockerfile pins spack-packages {pin}, but spack-repo/pins/ has no version lists \
         for it (have {files:?}): run `scripts/check-matrix --pins` with that commit unpacked"
    );
    assert_eq!(
        files.len(),
        1,
        "spack-repo/pins/ must hold only the lists of the pinned commit {pin}: {files:?}"
    );
    let pins = Pins::parse(
        &std::fs::read_to_string(&wanted).unwrap(),
        &wanted.display().to_string(),
    )
    .unwrap();
    assert_eq!(
        pins.spack_packages_commit,
        pin,
        "{} records commit {}, but docker/Dockerfile pins {pin}",
        wanted.display(),
        pins.spack_packages_commit
    );
    pins
}

#[test]
fn dockerfile_pin_and_recorded_lists_agree() {
    let pins = pins();
    for pkg in [
        "gcc", "slurm", "openmpi", "pmix", "munge", "hwloc", "openssl",
    ] {
        assert!(
            pins.packages.get(pkg).is_some_and(|v| !v.is_empty()),
            "no versions of {pkg} recorded"
        );
    }
    // Facts of v2025.07.0 the matrix rests on (checked with real Spack, see docs/matrix.md).
    let gcc: Vec<&str> = pins.packages["gcc"]
        .iter()
        .map(|v| v.version.as_str())
        .collect();
    assert!(
        gcc.contains(&"15.1.0") && !gcc.contains(&"15.2.0"),
        "{gcc:?}"
    );
}

#[test]
fn the_embedded_catalog_concretizes_at_the_pin() {
    let problems = check_catalog(&Catalog::embedded(), &pins());
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The catalog with `from` replaced by `to` (in a temp copy, parsed like `--catalog <path>`).
fn modified(from: &str, to: &str) -> Catalog {
    let text = std::fs::read_to_string(repo_root().join("catalog.yaml")).unwrap();
    assert!(text.contains(from), "{from} not in catalog.yaml");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.yaml");
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    Catalog::load(&path).unwrap()
}

#[test]
fn a_gcc_the_pin_lacks_fails_naming_version_and_pin() {
    // 15.3.0: not at the pin, not added by spack-repo.
    let cat = modified("\"15.2.0\"", "\"15.3.0\"");
    let problems = check_catalog(&cat, &pins());
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("GCC 15.3.0"), "{}", problems[0]);
    assert!(
        problems[0].contains("spack-packages 4b8bb351 (v2025.07.0)"),
        "{}",
        problems[0]
    );
}

#[test]
fn a_deprecated_gcc_fails() {
    // 12.4.0 is at the pin, but deprecated there.
    let cat = modified("\"12.5.0\"", "\"12.4.0\"");
    let problems = check_catalog(&cat, &pins());
    assert!(
        problems
            .iter()
            .any(|p| p.contains("GCC 12.4.0") && p.contains("deprecated")),
        "{problems:?}"
    );
}

#[test]
fn a_slurm_version_no_recipe_has_fails_naming_version_and_pin() {
    let cat = modified("\"25-11-6-1\"", "\"25-11-9-1\"");
    let problems = check_catalog(&cat, &pins());
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains("25-11-9-1") && problems[0].contains("spack-packages 4b8bb351"),
        "{}",
        problems[0]
    );
}

#[test]
fn gcc_15_2_0_is_covered_by_spack_repo_not_the_pin() {
    let pins = pins();
    assert!(
        !pins.packages["gcc"].iter().any(|v| v.version == "15.2.0"),
        "the pin has 15.2.0 now: drop it from spack-repo's gcc"
    );
    let cat = Catalog::embedded();
    assert!(
        cat.compiler_versions()
            .iter()
            .any(|v| v.to_string() == "15.2.0")
    );
    // Remove spack-repo's addition from the picture: the guard must then name 15.2.0.
    let mut bare = pins.clone();
    bare.packages.get_mut("gcc").unwrap().clear();
    let problems = check_catalog(&cat, &bare);
    assert!(
        !problems.iter().any(|p| p.contains("GCC 15.2.0")),
        "15.2.0 comes from spack-repo, not from the pin: {problems:?}"
    );
    assert!(
        problems.iter().any(|p| p.contains("GCC 14.2.0")),
        "{problems:?}"
    );
}
