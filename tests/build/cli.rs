//! `build-compiler` / `build-slurm` command lines that need no Docker: dry runs for the whole
//! catalog, failing fast without an engine, and refusing bad input before doing anything.

use std::time::{Duration, Instant};

use slurm_factory::catalog::Catalog;

use crate::common::scrubbed;

/// The fixture signing key, pinned for the Slurm builds below.
const FIXTURE_FPR: &str = "1A00B8893F4FAE1A76DB389DE145321FBC9F04BD";

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn build_slurm_dry_run_for_every_catalog_entry() {
    let cat = Catalog::embedded();
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    for rel in &cat.slurm.releases {
        for gcc in cat.slurm_compilers() {
            for gpu in [false, true] {
                let mut cmd = scrubbed("build-slurm");
                cmd.args(["--dry-run", "--slurm-version", rel.version.as_str()])
                    .args(["--trusted-fingerprint", FIXTURE_FPR])
                    .args(["--compiler-version", gcc.as_str()])
                    .arg("--output-dir")
                    .arg(&out_dir)
                    // Proves --dry-run never talks to Docker.
                    .env("DOCKER_HOST", "unix:///nonexistent/docker.sock");
                if gpu {
                    cmd.arg("--gpu");
                }
                let out = cmd.output().unwrap();
                let t = text(&out);
                assert!(out.status.success(), "{} {gcc} gpu={gpu}: {t}", rel.version);
                let flags = if gpu { "+nvml +rsmi" } else { "~nvml ~rsmi" };
                let root = format!(
                    "slurm_factory.slurm@{} sysconfdir=/etc/slurm {flags} %gcc@{gcc}",
                    rel.spack
                );
                assert!(t.contains(&root), "missing {root:?} in:\n{t}");
                // The default platform's compiler cache, built in its image.
                assert!(
                    t.contains(&format!("/compilers/el8/{gcc}/buildcache")),
                    "{t}"
                );
                assert!(
                    t.contains("Platform: el8 (Rocky Linux 8, glibc 2.28"),
                    "{t}"
                );
                // The toolchain is installed apart and declared as an external compiler.
                assert!(t.contains("==> toolchain spack.yaml"), "{t}");
                assert!(
                    t.contains(&format!("- spec: gcc@{gcc} languages=c,c++,fortran")),
                    "{t}"
                );
                assert!(
                    t.contains("==> Dockerfile (from the embedded docker/el8/ directory")
                        && t.contains("FROM docker.io/rockylinux/rockylinux:8@sha256:e8a49c54"),
                    "{t}"
                );
                assert!(t.contains("spack -e /slurm-factory/builds/"));
                // The pinned keys the host placed, never what the mirror publishes.
                assert!(t.contains("/env/trusted-keys.asc"), "{t}");
                assert!(t.contains(" gpg trust /slurm-factory/builds/"), "{t}");
                assert!(!t.contains("buildcache keys"), "{t}");
                for step in [
                    "trust-keys",
                    "toolchain",
                    "concretize",
                    "install",
                    "push",
                    "view",
                    "modules",
                ] {
                    assert!(
                        t.lines().any(|l| l.contains(&format!(". {step}: "))),
                        "step {step} missing"
                    );
                }
            }
        }
    }
    assert!(!out_dir.exists(), "--dry-run created {}", out_dir.display());
}

#[test]
fn build_compiler_dry_run_for_every_catalog_compiler() {
    let cat = Catalog::embedded();
    for gcc in cat.compiler_versions() {
        let out = scrubbed("build-compiler")
            .args(["--dry-run", "--compiler-version", gcc.as_str()])
            .output()
            .unwrap();
        let t = text(&out);
        assert!(out.status.success(), "{t}");
        assert!(
            t.contains(&format!(
                "- gcc@{gcc} +binutils +piclibs languages=c,c++,fortran"
            )),
            "{t}"
        );
        assert!(t.contains("buildcache push --unsigned --update-index --with-build-dependencies"));
        assert!(!t.contains(". view:"), "compiler jobs have no view");
    }
}

/// `--platform` (input `platform`) selects the build image and the prefixes of one platform;
/// a platform the catalog lacks, or one whose image digest is not recorded, is refused before
/// anything runs, with what to do.
#[test]
fn the_platform_selects_the_image_and_the_prefixes() {
    for (platform, from, glibc) in [
        (
            "el8",
            "FROM docker.io/rockylinux/rockylinux:8@sha256:e8a49c54",
            "2.28",
        ),
        (
            "el9",
            "FROM docker.io/rockylinux/rockylinux:9@sha256:81019941",
            "2.34",
        ),
        ("ubuntu24.04", "FROM ubuntu:24.04@sha256:cd1dba65", "2.39"),
    ] {
        let out = scrubbed("build-slurm")
            .args([
                "--dry-run",
                "--slurm-version",
                "25.11",
                "--compiler-version",
                "13.4.0",
            ])
            .args(["--trusted-fingerprint", FIXTURE_FPR, "--platform", platform])
            .output()
            .unwrap();
        let t = text(&out);
        assert!(out.status.success(), "{platform}: {t}");
        assert!(t.contains(from), "{platform}: {t}");
        assert!(
            t.contains(&format!("glibc {glibc}: the artifacts' floor")),
            "{t}"
        );
        assert!(
            t.contains(&format!("/compilers/{platform}/13.4.0/buildcache"))
                && t.contains(&format!("/slurm/{platform}/25.11/13.4.0/buildcache")),
            "{platform}: {t}"
        );
        assert!(
            t.contains(&format!(
                "builds/slurm-25.11-gcc13.4.0-cpu-amd64-{platform}-"
            )),
            "the namespace names the platform: {t}"
        );
        // The same through the action input.
        let dir = tempfile::tempdir().unwrap();
        let out = crate::common::in_actions("build-compiler", dir.path())
            .env("INPUT_DRY_RUN", "true")
            .env("INPUT_PLATFORM", platform)
            .output()
            .unwrap();
        let t = text(&out);
        assert!(out.status.success() && t.contains(from), "{platform}: {t}");
    }

    let dir = tempfile::tempdir().unwrap();
    let out = scrubbed("build-compiler")
        .args(["--dry-run", "--platform", "sles15"])
        .output()
        .unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains(
            "\"sles15\" is not a platform of the catalog; choose one of el8, el9, ubuntu24.04"
        ),
        "{t}"
    );

    // A catalog whose el9 digest is still to be recorded: el9 is refused (dry run or not, and
    // before Docker is reached), the others still build.
    let catalog = dir.path().join("catalog.yaml");
    let text_of = std::fs::read_to_string(crate::common::repo_root().join("catalog.yaml")).unwrap();
    let edited = text_of.replacen(
        "digest: \"sha256:8101994123cf3d0a8fee517bee7f39e555c7d92bd2d9eb3303cc988a0eeed00f\"",
        "digest: null",
        1,
    );
    assert_ne!(edited, text_of);
    std::fs::write(&catalog, edited).unwrap();
    for dry in [true, false] {
        let mut c = scrubbed("build-compiler");
        c.arg("--catalog")
            .arg(&catalog)
            .args(["--platform", "el9", "--output-dir"])
            .arg(dir.path().join("out"))
            .env("DOCKER_HOST", "unix:///nonexistent/docker.sock");
        if dry {
            c.arg("--dry-run");
        }
        let out = c.output().unwrap();
        let t = text(&out);
        assert_eq!(out.status.code(), Some(1), "{t}");
        assert!(
            t.contains("platform el9 (Rocky Linux 9) has no image digest in the catalog")
                && t.contains("docker buildx imagetools inspect docker.io/rockylinux/rockylinux:9"),
            "{t}"
        );
        assert!(!t.contains("Docker engine"), "refused before Docker: {t}");
    }
    assert!(!dir.path().join("out").exists());
    let out = scrubbed("build-compiler")
        .arg("--catalog")
        .arg(&catalog)
        .args(["--platform", "el8", "--dry-run"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn dry_run_reads_inputs_like_an_action() {
    let dir = tempfile::tempdir().unwrap();
    let out = crate::common::in_actions("build-slurm", dir.path())
        .env("INPUT_DRY_RUN", "true")
        .env("INPUT_SLURM_VERSION", "24.11")
        .env("INPUT_COMPILER_VERSION", "11.5.0")
        .env("INPUT_GPU", "true")
        .env("INPUT_COMPILER_BUILDCACHE", "file:///srv/compilers/11.5.0")
        .env("INPUT_TRUSTED_FINGERPRINTS", FIXTURE_FPR)
        .output()
        .unwrap();
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("slurm_factory.slurm@24-11-6-1 sysconfdir=/etc/slurm +nvml +rsmi %gcc@11.5.0"),
        "{t}"
    );
    assert!(t.contains("url: file:///srv/compilers/11.5.0"), "{t}");
}

/// The cache root: the flag, else the input `cache_dir`, else `SLURM_FACTORY_CACHE_DIR`, else
/// the runner's tool cache; `off` turns the caches off; a relative path is refused.
#[test]
fn the_cache_dir_comes_from_the_flag_the_input_the_env_or_the_runner() {
    let dir = tempfile::tempdir().unwrap();
    let plan = |tweak: &dyn Fn(&mut std::process::Command)| {
        let mut c = crate::common::in_actions("build-slurm", dir.path());
        c.env("INPUT_DRY_RUN", "true")
            .env("INPUT_TRUSTED_FINGERPRINTS", FIXTURE_FPR)
            .env("RUNNER_TOOL_CACHE", "/opt/hostedtoolcache");
        tweak(&mut c);
        let out = c.output().unwrap();
        (out.status.code(), text(&out))
    };
    let mirror = |root: &str| {
        format!(
            "{root}/spack-sources -> /slurm-factory/source-mirror (read-only: the shared source cache, capped at 50.0 GiB)"
        )
    };
    let (code, t) = plan(&|_| {});
    assert_eq!(code, Some(0), "{t}");
    assert!(
        t.contains(&mirror("/opt/hostedtoolcache/slurm-factory")),
        "{t}"
    );
    assert!(
        t.contains("Image cache: /opt/hostedtoolcache/slurm-factory/images/"),
        "{t}"
    );
    let (_, t) = plan(&|c| {
        c.env("SLURM_FACTORY_CACHE_DIR", "/srv/env-cache");
    });
    assert!(t.contains(&mirror("/srv/env-cache")), "{t}");
    let (_, t) = plan(&|c| {
        c.env("SLURM_FACTORY_CACHE_DIR", "/srv/env-cache")
            .env("INPUT_CACHE_DIR", "/srv/input-cache");
    });
    assert!(t.contains(&mirror("/srv/input-cache")), "{t}");
    let (_, t) = plan(&|c| {
        c.env("INPUT_CACHE_DIR", "/srv/input-cache")
            .args(["--cache-dir", "/srv/flag-cache"]);
    });
    assert!(t.contains(&mirror("/srv/flag-cache")), "{t}");
    let (_, t) = plan(&|c| {
        c.env("INPUT_CACHE_DIR", "off");
    });
    assert!(t.contains("No runner caches"), "{t}");
    assert!(
        !t.contains("/slurm-factory/source-mirror (read-only"),
        "{t}"
    );
    let (code, t) = plan(&|c| {
        c.env("INPUT_CACHE_DIR", "relative/cache");
    });
    assert_eq!(code, Some(1), "{t}");
    assert!(
        t.contains("::error::") && t.contains("give an absolute path"),
        "{t}"
    );
}

#[test]
fn without_docker_it_fails_fast_and_touches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    let started = Instant::now();
    let out = scrubbed("build-slurm")
        .arg("--output-dir")
        .arg(&out_dir)
        .arg("--trusted-key")
        .arg(crate::common::repo_root().join("tests/fixtures/spack-v3/keys/demo-signer.pub.asc"))
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains("cannot reach the Docker engine at unix:///nonexistent/docker.sock"),
        "{t}"
    );
    assert!(
        t.contains("--dry-run"),
        "the message should point at --dry-run: {t}"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(
        !out_dir.exists(),
        "a failed connection must not create {}",
        out_dir.display()
    );
}

/// No key pinned (the embedded catalog pins none): `--toolchain auto` (the default) plans the
/// toolchain from source and reads no buildcache; `--toolchain buildcache` is refused with what
/// to do; a pin selects the compiler buildcache; `--toolchain source` never reads it.
#[test]
fn the_toolchain_comes_from_the_buildcache_only_with_a_pinned_key() {
    // Every example of the --help text that is a dry run, and the README's first command.
    let out = scrubbed("build-slurm")
        .args([
            "--slurm-version",
            "25.11",
            "--compiler-version",
            "13.4.0",
            "--dry-run",
        ])
        .output()
        .unwrap();
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("::notice::") || t.contains("no signing key is pinned"),
        "{t}"
    );
    assert!(
        t.contains("Toolchain: GCC 13.4.0 built from source first"),
        "{t}"
    );
    assert!(t.contains(": Build the GCC toolchain from source"), "{t}");
    assert!(
        !t.contains("--cache-only") && !t.contains("gpg trust"),
        "{t}"
    );
    // Its only mirror is the runner's source cache (sources, checked against the recipes'
    // checksums by Spack), never a buildcache.
    assert!(
        !t.contains("binary: true") && !t.contains("slurm-factory-compiler"),
        "a build that trusts nothing reads a buildcache: {t}"
    );
    assert!(t.contains("slurm-factory-sources:"), "{t}");

    let out = scrubbed("build-slurm")
        .args(["--dry-run", "--toolchain", "buildcache"])
        .output()
        .unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains("no signing key is pinned for the compiler buildcache")
            && t.contains("--trusted-fingerprint"),
        "{t}"
    );

    let out = scrubbed("build-slurm")
        .args(["--dry-run", "--trusted-fingerprint", FIXTURE_FPR])
        .output()
        .unwrap();
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("from the signed compiler buildcache"), "{t}");
    assert!(
        t.contains("install --cache-only") && t.contains("gpg trust"),
        "{t}"
    );

    let out = scrubbed("build-slurm")
        .args([
            "--dry-run",
            "--toolchain",
            "source",
            "--trusted-fingerprint",
            FIXTURE_FPR,
        ])
        .output()
        .unwrap();
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("built from source first"), "{t}");
    assert!(
        !t.contains("--cache-only") && !t.contains("binary: true"),
        "{t}"
    );

    // As an action passes them: the input toolchain wins over a pinned input fingerprint.
    let dir = tempfile::tempdir().unwrap();
    let out = crate::common::in_actions("build-slurm", dir.path())
        .env("INPUT_DRY_RUN", "true")
        .env("INPUT_TOOLCHAIN", "source")
        .env("INPUT_TRUSTED_FINGERPRINTS", format!("{FIXTURE_FPR}\n"))
        .output()
        .unwrap();
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("built from source first"), "{t}");
    // An empty input (publish: none skipped preflight) is no pin: auto builds from source.
    let out = crate::common::in_actions("build-slurm", dir.path())
        .env("INPUT_DRY_RUN", "true")
        .env("INPUT_TOOLCHAIN", "auto")
        .env("INPUT_TRUSTED_FINGERPRINTS", "\n")
        .output()
        .unwrap();
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("::notice::no signing key is pinned"), "{t}");

    let out = scrubbed("build-slurm")
        .args(["--dry-run", "--toolchain", "sideways"])
        .output()
        .unwrap();
    assert!(
        text(&out).contains("use auto, buildcache or source"),
        "{}",
        text(&out)
    );
    let out = scrubbed("build-slurm")
        .args(["--dry-run", "--trusted-fingerprint", "E145321FBC9F04BD"])
        .output()
        .unwrap();
    assert!(
        text(&out).contains("not an OpenPGP fingerprint"),
        "{}",
        text(&out)
    );
}

/// Every example in `build-slurm --help` that can run without Docker (the dry runs) works as
/// written, with no key pinned.
#[test]
fn help_examples_that_are_dry_runs_work_as_written() {
    let help = scrubbed("build-slurm").arg("--help").output().unwrap();
    let help = text(&help);
    let examples: Vec<&str> = help
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("build-slurm ") && l.contains("--dry-run"))
        .collect();
    assert!(!examples.is_empty(), "{help}");
    for line in examples {
        let args: Vec<&str> = line
            .split('#')
            .next()
            .unwrap()
            .split_whitespace()
            .skip(1)
            .collect();
        let out = scrubbed("build-slurm").args(&args).output().unwrap();
        assert!(out.status.success(), "{line}: {}", text(&out));
    }
}

#[test]
fn bad_input_is_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &[&str], &str)] = &[
        (
            "build-slurm",
            &["--slurm-version", "19.05"],
            "known releases: 26.05, 25.11, 24.11, 23.11",
        ),
        (
            "build-slurm",
            &["--compiler-version", "13.4"],
            "not a Gcc version",
        ),
        (
            "build-slurm",
            &["--publish", "everything"],
            "not one of: all, slurm-only, none",
        ),
        ("build-slurm", &["--timeout-minutes", "0"], "at least 1"),
        (
            "build-compiler",
            &["--compiler-version", "6.1.0"],
            "not in the catalog",
        ),
        (
            "build-compiler",
            &["--arch", "riscv"],
            "architecture \"riscv\" is not in the catalog",
        ),
        (
            "build-compiler",
            &["--docker-context", "/nonexistent-dir", "--dry-run"],
            "no Dockerfile",
        ),
    ];
    for (bin, args, want) in cases {
        let out = scrubbed(bin)
            .args(*args)
            .arg("--output-dir")
            .arg(dir.path().join("out"))
            .output()
            .unwrap();
        let t = text(&out);
        assert_eq!(out.status.code(), Some(1), "{bin} {args:?}: {t}");
        assert!(t.contains(want), "{bin} {args:?}: want {want:?} in {t}");
    }
    assert!(!dir.path().join("out").exists());
}

/// `--publish` is checked before the (hours-long) build: without a signing key it fails in
/// seconds with a clear reason, builds nothing and creates nothing.
#[test]
fn publish_without_a_key_fails_before_building() {
    let dir = tempfile::tempdir().unwrap();
    let out = scrubbed("build-slurm")
        .args(["--trusted-fingerprint", FIXTURE_FPR])
        .args(["--publish", "all", "--destination"])
        .arg(format!("file://{}", dir.path().join("mirror").display()))
        .arg("--output-dir")
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("nothing was built"), "{t}");
    assert!(
        t.contains("GPG_PRIVATE_KEY"),
        "the error must say where the key comes from: {t}"
    );
    assert!(!dir.path().join("out").exists());
    assert!(!dir.path().join("mirror").exists());
}

/// Every platform's build image passes hadolint (the images cannot be built here: no registry
/// is reachable, so linting and the FROM-digest check in `docker::context` are what runs).
#[test]
fn every_platform_dockerfile_passes_hadolint() {
    let Some(hadolint) = crate::common::require_tool("hadolint") else {
        return;
    };
    let catalog = Catalog::embedded();
    let files: Vec<std::path::PathBuf> = catalog
        .platforms
        .images
        .iter()
        .map(|p| crate::common::repo_root().join(format!("docker/{}/Dockerfile", p.name)))
        .collect();
    assert_eq!(files.len(), 3);
    let out = std::process::Command::new(hadolint)
        .arg("--no-color")
        .args(&files)
        .output()
        .unwrap();
    assert!(out.status.success(), "hadolint:\n{}", text(&out));
    // A finding turns it red (the check can fail).
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("Dockerfile");
    std::fs::write(&bad, "FROM scratch\nRUN cd /tmp && echo x\n").unwrap();
    let out = std::process::Command::new(crate::common::require_tool("hadolint").unwrap())
        .arg("--no-color")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", text(&out));
}

/// The leg prepare-matrix (the real binary) plans for `kind` from the checkout `source_dir`, as
/// the pipelines hand it to the build steps (`leg: ${{ toJSON(matrix) }}`).
fn planned_leg(kind: &str, source_dir: &std::path::Path) -> String {
    planned_leg_with(kind, source_dir, &|_| {})
}

fn planned_leg_with(
    kind: &str,
    source_dir: &std::path::Path,
    tweak: &dyn Fn(&mut std::process::Command),
) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = crate::common::in_actions("prepare-matrix", dir.path());
    tweak(&mut cmd);
    let out = cmd
        .env("INPUT_KIND", kind)
        .env("INPUT_SLURM_VERSIONS", "24.11")
        .env("INPUT_COMPILER_VERSIONS", "13.4.0")
        .env("INPUT_SKIP_BUILT", "false")
        .env("INPUT_SOURCE_DIR", source_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let outputs = crate::common::runner_file_map(&dir.path().join("output"));
    let m: serde_json::Value = serde_json::from_str(&outputs["matrix"]).unwrap();
    assert_eq!(m["include"].as_array().unwrap().len(), 1, "{m}");
    m["include"][0].to_string()
}

#[test]
fn a_leg_whose_fingerprint_differs_from_the_plan_is_refused_before_anything_is_built() {
    // A checkout like the one this binary embeds: the plan and the build agree.
    let co = tempfile::tempdir().unwrap();
    let st = std::process::Command::new("cp")
        .arg("-R")
        .arg(crate::common::repo_root().join("spack-repo"))
        .arg(crate::common::repo_root().join("docker"))
        .arg(co.path())
        .status()
        .unwrap();
    assert!(st.success());
    let same_slurm = planned_leg("slurm", co.path());
    let dir = tempfile::tempdir().unwrap();
    let out = crate::common::in_actions("build-slurm", dir.path())
        .env("INPUT_DRY_RUN", "true")
        .env("INPUT_SLURM_VERSION", "24.11")
        .env("INPUT_COMPILER_VERSION", "13.4.0")
        .env("INPUT_LEG", &same_slurm)
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("leg slurm-24.11-gcc13.4.0-cpu-amd64-el8: fingerprint sha256:"),
        "{}",
        text(&out)
    );

    // The plan saw a gcc recipe this binary does not build with: both builders refuse their leg
    // in seconds, naming what differs, and reach neither Docker nor the output directory.
    let gcc = co
        .path()
        .join("spack-repo/spack_repo/slurm_factory/packages/gcc/package.py");
    let mut recipe = std::fs::read_to_string(&gcc).unwrap();
    recipe.push_str("\n# a toolchain this binary does not build\n");
    std::fs::write(&gcc, recipe).unwrap();
    for (bin, kind, differ, versions) in [
        (
            "build-slurm",
            "slurm",
            "(differing ingredients: spack-repo, toolchain)",
            &[
                ("INPUT_SLURM_VERSION", "24.11"),
                ("INPUT_COMPILER_VERSION", "13.4.0"),
            ][..],
        ),
        (
            "build-slurm",
            "tarball",
            "(differing ingredients: spack-repo, toolchain)",
            &[
                ("INPUT_SLURM_VERSION", "24.11"),
                ("INPUT_COMPILER_VERSION", "13.4.0"),
            ][..],
        ),
        (
            "build-compiler",
            "compiler",
            "(differing ingredients: spack-repo)",
            &[("INPUT_COMPILER_VERSION", "13.4.0")][..],
        ),
    ] {
        let leg = planned_leg(kind, co.path());
        let dir = tempfile::tempdir().unwrap();
        let out_dir = dir.path().join("out");
        let started = Instant::now();
        let mut cmd = crate::common::in_actions(bin, dir.path());
        cmd.envs(versions.iter().copied())
            .env("INPUT_LEG", &leg)
            .env("INPUT_OUTPUT_DIR", &out_dir)
            .env("DOCKER_HOST", "unix:///nonexistent/docker.sock");
        let out = cmd.output().unwrap();
        let t = text(&out);
        assert_eq!(out.status.code(), Some(1), "{bin} {kind}: {t}");
        assert!(
            t.contains("::error::") && t.contains(differ) && t.contains("nothing was built"),
            "{bin} {kind}: {t}"
        );
        assert!(!t.contains("Docker engine"), "refused before Docker: {t}");
        assert!(
            !out_dir.exists(),
            "{bin} {kind} created {}",
            out_dir.display()
        );
        assert!(started.elapsed() < Duration::from_secs(20));
    }

    // A leg of another job than the one asked for is refused too.
    let out = crate::common::in_actions("build-slurm", dir.path())
        .env("INPUT_DRY_RUN", "true")
        .env("INPUT_SLURM_VERSION", "25.11")
        .env("INPUT_COMPILER_VERSION", "13.4.0")
        .env("INPUT_LEG", &same_slurm)
        .output()
        .unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains("::error::") && t.contains("but this step builds slurm-25.11-gcc13.4.0"),
        "{t}"
    );
}

#[test]
fn a_custom_image_context_the_plan_did_not_see_is_refused_as_changed_docker() {
    let co = tempfile::tempdir().unwrap();
    let st = std::process::Command::new("cp")
        .arg("-R")
        .arg(crate::common::repo_root().join("spack-repo"))
        .arg(crate::common::repo_root().join("docker"))
        .arg(co.path())
        .status()
        .unwrap();
    assert!(st.success());
    // A site's context: the project's el8 Dockerfile plus a CA certificate.
    let ctx = tempfile::tempdir().unwrap();
    std::fs::copy(
        crate::common::repo_root().join("docker/el8/Dockerfile"),
        ctx.path().join("Dockerfile"),
    )
    .unwrap();
    std::fs::write(ctx.path().join("site-ca.pem"), "a site CA\n").unwrap();
    let build = |leg: &str| {
        let dir = tempfile::tempdir().unwrap();
        let out = crate::common::in_actions("build-compiler", dir.path())
            .env("INPUT_DRY_RUN", "true")
            .env("INPUT_COMPILER_VERSION", "13.4.0")
            .env("INPUT_LEG", leg)
            .env("SLURM_FACTORY_DOCKER_CONTEXT", ctx.path())
            .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
            .output()
            .unwrap();
        (out.status.code(), text(&out))
    };
    // The plan fingerprinted docker/el8/ of its checkout; the build would use another image.
    let (code, t) = build(&planned_leg("compiler", co.path()));
    assert_eq!(code, Some(1), "{t}");
    assert!(
        t.contains("::error::")
            && t.contains("(differing ingredients: docker)")
            && t.contains("nothing was built"),
        "{t}"
    );
    // A plan that sees the same context (the runners' SLURM_FACTORY_DOCKER_CONTEXT) agrees.
    let leg = planned_leg_with("compiler", co.path(), &|c| {
        c.env("SLURM_FACTORY_DOCKER_CONTEXT", ctx.path());
    });
    let (code, t) = build(&leg);
    assert_eq!(code, Some(0), "{t}");
}
