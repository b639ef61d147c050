//! The guard of the build matrix that CI can run: the catalog names only versions the pinned
//! spack-packages commit has (or `spack-repo` adds), and the recorded version lists
//! (`spack-repo/pins/`, extracted by `scripts/check-matrix --pins` with real Spack) are those
//! of the commit the Dockerfile pins. `docs/matrix.md`, the concretization of every cell, was
//! produced with the same pins.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;

use common::repo_root;
use slurm_factory::catalog::Catalog;
use slurm_factory::matrix::{Kind, Request, plan};
use slurm_factory::spack::pins::{Pins, check_catalog, dockerfile_pin};

fn pins_dir() -> PathBuf {
    repo_root().join("spack-repo/pins")
}

/// The one recorded pins file, checked against the Dockerfiles' pin (every platform's
/// Dockerfile pins the same commit).
fn pins() -> Pins {
    let catalog = Catalog::embedded();
    let pinned: BTreeSet<String> = catalog
        .platforms
        .images
        .iter()
        .map(|p| {
            let path = repo_root().join(format!("docker/{}/Dockerfile", p.name));
            dockerfile_pin(&std::fs::read_to_string(&path).unwrap()).unwrap()
        })
        .collect();
    assert_eq!(
        pinned.len(),
        1,
        "the platforms' Dockerfiles pin different spack-packages commits: {pinned:?}"
    );
    let pin = pinned.into_iter().next().unwrap();
    let files: Vec<PathBuf> = std::fs::read_dir(pins_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let wanted = pins_dir().join(format!("spack-packages-{pin}.json"));
    assert!(
        files.contains(&wanted),
        "docker/*/Dockerfile pin spack-packages {pin}, but spack-repo/pins/ has no version lists \
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
        "{} records commit {}, but docker/*/Dockerfile pin {pin}",
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

/// The names `scripts/check-matrix` gives the legs of `prepare-matrix` on every platform: every
/// compiler leg (`gcc-<V>-<arch>-<platform>`) and every Slurm leg built without and with
/// `--gpu` (`slurm-<S>-gcc<V>-<cpu|gpu>-<arch>-<platform>`), for every architecture and
/// platform of the catalog.
fn matrix_cells(catalog: &Catalog) -> BTreeSet<String> {
    let all = |kind: Kind, compilers: Option<&str>| {
        let request = Request {
            kind,
            compiler_versions: compilers.map(Into::into),
            slurm_versions: Some("all".into()),
            architectures: Some("all".into()),
            platforms: Some("all".into()),
            gpu: false,
        };
        plan(catalog, &request).unwrap().include
    };
    let mut cells = BTreeSet::new();
    for e in all(Kind::Compiler, Some("all")) {
        cells.insert(format!(
            "gcc-{}-{}-{}",
            e.compiler_version, e.arch, e.platform
        ));
    }
    // Slurm legs: the Slurm-paired compilers, as the generated workflows request them.
    for e in all(Kind::Slurm, None) {
        let slurm = e.slurm_version.unwrap();
        for gpu in ["cpu", "gpu"] {
            cells.insert(format!(
                "slurm-{slurm}-gcc{}-{gpu}-{}-{}",
                e.compiler_version, e.arch, e.platform
            ));
        }
    }
    cells
}

/// Groups of legs not all concretized yet: (platform, cell name prefix, infix such as
/// `-arm64-` or `-gpu-amd64-`). Empty: every leg of every platform has a successful recorded
/// check. When a new platform (or release, or compiler) cannot be checked in one go, list its
/// group here: a recorded result in such a group must still be `ok`, and the others are listed
/// as not run in docs/matrix.md. Run `scripts/check-matrix --platform <p>` (it resumes) and drop
/// the group: this test fails once a group is complete, so the list cannot go stale.
const NOT_ALL_CHECKED: &[(&str, &str, &str)] = &[];

fn in_group(cell: &str, (platform, prefix, infix): (&str, &str, &str)) -> bool {
    cell.ends_with(&format!("-{platform}")) && cell.starts_with(prefix) && cell.contains(infix)
}

/// What `docs/matrix.md` accounts for: the cells of its table and of its `Not run` list.
fn documented_cells(md: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let first_code = |line: &str| line.split('`').nth(1).map(str::to_owned);
    let rows = md
        .lines()
        .filter(|l| l.starts_with("| `"))
        .filter_map(first_code)
        .collect();
    let not_run = md
        .lines()
        .filter(|l| l.starts_with("Not run ("))
        .flat_map(|l| l.split('`').skip(1).step_by(2).map(str::to_owned))
        .collect();
    (rows, not_run)
}

/// The recorded concretization check covers the matrix the pipeline runs, no more and no less:
/// `docs/matrix.jsonl` records only cells that are legs of `prepare-matrix`, and
/// `docs/matrix.md` (rendered from it) shows each leg, as a result or as not run yet.
#[test]
fn the_recorded_matrix_check_covers_the_prepare_matrix_legs() {
    let legs = matrix_cells(&Catalog::embedded());
    // 9 compilers and 8 Slurm-paired compilers × 4 releases, ± GPU, on amd64 and arm64, on
    // el8, el9 and ubuntu24.04.
    assert_eq!(legs.len(), (9 + 8 * 4 * 2) * 2 * 3, "{legs:?}");

    let jsonl = std::fs::read_to_string(repo_root().join("docs/matrix.jsonl")).unwrap();
    let recorded: BTreeSet<String> = jsonl
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["cell"].as_str().unwrap().to_owned()
        })
        .collect();
    let stale: Vec<&String> = recorded.difference(&legs).collect();
    assert!(
        stale.is_empty(),
        "docs/matrix.jsonl records cells that are not legs of prepare-matrix: {stale:?}; \
         re-run scripts/check-matrix after changing the catalog"
    );

    let md = std::fs::read_to_string(repo_root().join("docs/matrix.md")).unwrap();
    let (rows, not_run) = documented_cells(&md);
    assert_eq!(
        rows, recorded,
        "docs/matrix.md's table is not docs/matrix.jsonl: run scripts/check-matrix --render-only"
    );
    let shown: BTreeSet<String> = rows.union(&not_run).cloned().collect();
    assert_eq!(
        shown, legs,
        "docs/matrix.md does not account for every leg of prepare-matrix: run \
         scripts/check-matrix --render-only"
    );
    assert!(
        rows.is_disjoint(&not_run),
        "a cell is both shown and not run"
    );
}

/// Issue 14's promise, kept: every leg `prepare-matrix` can start has been concretized with the
/// pinned Spack, and its latest recorded result is `ok`. A leg added to the catalog (a new GCC
/// or Slurm release) fails here until `scripts/check-matrix` has been run on it and it passed.
#[test]
fn every_leg_of_the_matrix_concretizes_in_the_recorded_check() {
    let catalog = Catalog::embedded();
    let all_legs = matrix_cells(&catalog);
    let legs: BTreeSet<&String> = all_legs
        .iter()
        .filter(|c| !NOT_ALL_CHECKED.iter().any(|g| in_group(c, *g)))
        .collect();
    // The default platform's CPU legs of the default architecture are never excepted.
    let default = format!(
        "-{}-{}",
        catalog.architectures.default, catalog.platforms.default
    );
    let public: Vec<&String> = all_legs
        .iter()
        .filter(|c| c.ends_with(&default) && !c.contains("-gpu-"))
        .collect();
    assert_eq!(public.len(), 9 + 8 * 4);
    assert!(public.iter().all(|c| legs.contains(c)));
    let jsonl = std::fs::read_to_string(repo_root().join("docs/matrix.jsonl")).unwrap();
    // The file is appended to: a cell's latest line is its result.
    let mut latest = std::collections::BTreeMap::new();
    for l in jsonl.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        latest.insert(
            v["cell"].as_str().unwrap().to_owned(),
            v["result"].as_str().unwrap_or_default().to_owned(),
        );
    }
    let unchecked: Vec<&String> = legs
        .iter()
        .copied()
        .filter(|c| !latest.contains_key(*c))
        .collect();
    assert!(
        unchecked.is_empty(),
        "legs of prepare-matrix never concretized with the pinned Spack: {unchecked:?}; run \
         scripts/check-matrix on them (see docs/matrix.md) and commit docs/matrix.jsonl"
    );
    let failing: Vec<String> = latest
        .iter()
        .filter(|(_, r)| r.as_str() != "ok")
        .map(|(c, r)| format!("{c}: {r}"))
        .collect();
    assert!(
        failing.is_empty(),
        "legs whose latest concretization did not succeed: {failing:?}"
    );
    for g in NOT_ALL_CHECKED {
        let group: Vec<&String> = all_legs.iter().filter(|c| in_group(c, *g)).collect();
        assert!(!group.is_empty(), "{g:?} names no legs");
        assert!(
            !group.iter().all(|c| latest.contains_key(*c)),
            "every leg of {g:?} is checked now: drop it from NOT_ALL_CHECKED"
        );
    }
}
