//! Rehearsals of the generated build pipelines (issue 20): each test replays one workflow of
//! `.github/workflows` with act (host mode) through every job and step, wired exactly as the
//! generated file wires it, with the binaries this test suite built. What stands in for the
//! outside world (the build image and Spack, S3/STS, GitHub, Slack) is listed in
//! `tests/rehearsal/harness.rs`.
//!
//! Each rehearsal asserts that every leg is green, that what the leg published verifies against
//! the pinned key with our own verifier, that the leg's test-install step installed it, and that
//! the report lists every leg. The mutation cases drop one wiring of the generated workflow
//! and show that the rehearsal turns red.

mod common;
#[path = "s3/harness.rs"]
#[allow(unused_imports)]
mod harness;
#[path = "rehearsal/harness.rs"]
mod rehearsal;

use std::process::Command;

use rehearsal::{FPR, Outcome, Rehearsal};

/// The last lines of act's log (the whole log runs to thousands of lines).
fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(150)..].join("\n")
}

fn assert_green(o: &Outcome, legs: &[&str]) {
    assert!(
        o.success,
        "act failed; jobs:\n{}\n\nlog:\n{}",
        o.job_conclusions(),
        tail(&o.log)
    );
    for leg in legs {
        assert!(
            o.jobs
                .iter()
                .any(|(n, c)| n.contains(leg) && c == "success"),
            "leg {leg} did not succeed; jobs:\n{}\n\nlog:\n{}",
            o.job_conclusions(),
            tail(&o.log)
        );
    }
    assert!(
        o.jobs.iter().all(|(_, c)| c == "success"),
        "a job failed:\n{}",
        o.job_conclusions()
    );
}

/// Our own verifier over what a leg published to (stand-in) S3, against the pinned key.
fn verify_published(r: &Rehearsal, url: &str) -> String {
    let out = Command::new(common::bin("slurm-factory"))
        .args(["verify", "--buildcache", url, "--trusted-key"])
        .arg(common::repo_root().join("tests/fixtures/spack-v3/keys/demo-signer.pub.asc"))
        .args(["--endpoint-url", &r.moto.endpoint])
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "verify {url} failed:\n{text}");
    text
}

/// The report job's table (in its step summary, as act prints it) counts the `n` legs that ran
/// as passed, names each leg's GCC as a column, and one Slack message says the same.
fn report_lists(o: &Outcome, n: usize, gccs: &[&str]) {
    let verdict = format!("{n} of {n} legs passed");
    assert_eq!(o.slack.len(), 1, "one Slack message per run: {:?}", o.slack);
    assert!(o.slack[0].contains(&verdict), "{}", o.slack[0]);
    let summary = o
        .log
        .split("Summary - ### ")
        .filter(|s| s.contains(&verdict))
        .last()
        .unwrap_or_else(|| panic!("no report summary says {verdict:?}:\n{}", tail(&o.log)));
    for gcc in gccs {
        assert!(
            summary.contains(&format!("| {gcc} |")) && summary.contains("[✅]"),
            "the report table has no passed column for GCC {gcc}:\n{summary}"
        );
    }
}

/// The dispatch inputs of one CPU slurm-all leg with GCC 13.4.0.
fn slurm_all<'a>(slurm: &'a str, publish: &'a str) -> [(&'static str, &'a str); 4] {
    [
        ("slurm_versions", slurm),
        ("compiler_versions", "13.4.0"),
        ("gpu", "false"),
        ("publish", publish),
    ]
}

/// Runs the compiler pipeline for GCC 13.4.0 and checks it is green: the first pipeline of a
/// fresh bucket, whose cache the Slurm pipelines take their toolchain from.
fn publish_the_compiler(r: &Rehearsal) -> Outcome {
    publish_the_compiler_on(r, "el8")
}

/// The same on `platform`: a Slurm leg of a platform reads that platform's compiler cache.
fn publish_the_compiler_on(r: &Rehearsal, platform: &str) -> Outcome {
    let o = r.act(
        "build-and-publish-compiler-buildcache.yml",
        &[("compiler_versions", "13.4.0"), ("platforms", platform)],
        None,
        |_| {},
    );
    assert_green(&o, &[&format!("GCC 13.4.0 · amd64 · {platform}")]);
    let legs = o.legs();
    assert_eq!(
        legs[0]["buildcache_prefix"],
        format!("compilers/{platform}/13.4.0/buildcache").as_str()
    );
    o
}

#[tokio::test(flavor = "multi_thread")]
async fn the_compiler_pipeline_runs_end_to_end() {
    let Some(r) = Rehearsal::start().await else {
        return;
    };
    let o = publish_the_compiler(&r);
    assert!(
        o.log
            .contains("Success - Main Install from the published buildcache"),
        "{}",
        o.log
    );
    assert!(o.oidc_requests >= 1, "no OIDC token was requested");
    let legs = o.legs();
    let prefix = legs[0]["buildcache_prefix"].as_str().unwrap();
    let text = verify_published(
        &r,
        &format!("s3://{}/{prefix}", r.catalog.publish.buildcache_bucket),
    );
    assert!(text.contains("gcc@13.4.0"), "{text}");
    assert!(text.contains(FPR) || text.contains("verified"), "{text}");
    report_lists(&o, 1, &["13.4.0"]);
    // The build step checked its leg against the plan before building, with the stand-in
    // image's context the plan fingerprinted too (SLURM_FACTORY_DOCKER_CONTEXT).
    assert!(
        o.log
            .contains("leg gcc-13.4.0-amd64-el8: fingerprint sha256:")
            && o.log.contains("is the plan's"),
        "{}",
        tail(&o.log)
    );
    // The leg kept its build image in the runner's cache (the workflow's `cache_dir` is empty
    // without the repository variable, so the binary took SLURM_FACTORY_CACHE_DIR).
    assert!(o.log.contains("Saved the build image"), "{}", o.log);
    let images: Vec<_> = std::fs::read_dir(r.runner_cache().join("images"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tar"))
        .collect();
    assert_eq!(images.len(), 1, "{images:?}");

    assert!(
        o.log.contains("build (no stamp)") && o.log.contains("build stamp s3://"),
        "the first run found no stamp and its leg wrote one:\n{}",
        tail(&o.log)
    );

    // Dispatched again with nothing changed: the plan verifies the leg's stamp (read from the
    // public URL: the plan job has no AWS credentials) against the pinned key, skips the leg,
    // and outputs an empty matrix; binaries, build and report are skipped, not failed.
    let again = r.act(
        "build-and-publish-compiler-buildcache.yml",
        &[("compiler_versions", "13.4.0"), ("platforms", "el8")],
        None,
        |_| {},
    );
    assert!(again.success, "{}", tail(&again.log));
    assert!(again.legs().is_empty(), "{}", tail(&again.log));
    assert!(
        again.log.contains("::set-output:: count=0")
            && again.log.contains("skip (unchanged since https://github.com/vantagecompute/slurm-factory/actions/runs/"),
        "{}",
        tail(&again.log)
    );
    assert_eq!(
        again.job_conclusions(),
        "Plan the compiler matrix: success",
        "only the plan ran"
    );
    assert!(
        !again.log.contains("Run Main Build GCC") && again.slack.is_empty(),
        "{}",
        tail(&again.log)
    );

    // With force the plan schedules the leg again (the plan job alone: the build it would run
    // is the one above).
    let forced = r.act(
        "build-and-publish-compiler-buildcache.yml",
        &[
            ("compiler_versions", "13.4.0"),
            ("platforms", "el8"),
            ("force", "true"),
        ],
        None,
        |c| {
            c.args(["-j", "plan"]);
        },
    );
    assert!(forced.success, "{}", tail(&forced.log));
    assert_eq!(forced.legs().len(), 1, "{}", tail(&forced.log));
    assert!(
        forced.log.contains("build (forced)"),
        "{}",
        tail(&forced.log)
    );
}

/// An unsigned buildcache of the real Slurm 24.11.5 that `scripts/real-slurm` built with the
/// vendored Spack, pushed by real Spack into `dir`: what the slurm-all leg's Spack pushes in
/// this rehearsal. `None` after saying why the test is skipped (under CI: a failure).
fn real_slurm_cache(dir: &std::path::Path) -> Option<std::path::PathBuf> {
    let builds = common::repo_root().join(".real-slurm");
    let entry = std::fs::read_dir(&builds).ok().and_then(|rd| {
        rd.flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("24.11.5-"))
                    && p.join("DONE").is_file()
            })
            .max()
    });
    let Some(entry) = entry else {
        assert!(
            !common::under_ci(),
            "no real Slurm 24.11.5 build under .real-slurm (scripts/real-slurm)"
        );
        eprintln!("skipped: no real Slurm 24.11.5 build (run scripts/real-slurm 24.11.5)");
        return None;
    };
    let spack = common::real_spack()?;
    let cache = dir.join("real-slurm-cache");
    // Slurm and its runtime dependencies that are not externals (gcc-runtime), as a leg pushes
    // them.
    let out = spack
        .command(&entry.join("home"))
        .arg("-e")
        .arg(entry.join("env"))
        .args(["buildcache", "push", "--unsigned", "--update-index"])
        .arg(&cache)
        .arg("slurm")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "spack buildcache push: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(cache)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_slurm_all_pipeline_runs_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(cache) = real_slurm_cache(tmp.path()) else {
        return;
    };
    let Some(r) = Rehearsal::start().await else {
        return;
    };
    publish_the_compiler(&r);
    let o = r.act(
        "build-and-publish-slurm-all.yml",
        &slurm_all("24.11", "all"),
        Some(&cache),
        |_| {},
    );
    assert_green(&o, &["Slurm 24.11 · GCC 13.4.0"]);
    assert!(
        o.log
            .contains("Success - Main Install from the published buildcache"),
        "{}",
        tail(&o.log)
    );
    assert!(
        o.log.contains("srun"),
        "the cluster smoke did not run a job:\n{}",
        tail(&o.log)
    );
    let legs = o.legs();
    let prefix = legs[0]["buildcache_prefix"].as_str().unwrap();
    let text = verify_published(
        &r,
        &format!("s3://{}/{prefix}", r.catalog.publish.buildcache_bucket),
    );
    assert!(text.contains("slurm@24-11-5-1"), "{text}");
    report_lists(&o, 1, &["13.4.0"]);
}

/// The tarball pipeline on ubuntu24.04: the stand-in image's "built" Slurm is this host's
/// (Debian 12, glibc 2.36), which only a platform with a floor of 2.36 or more can promise; the
/// default el8 refuses it (next test).
#[tokio::test(flavor = "multi_thread")]
async fn the_tarball_pipeline_runs_end_to_end() {
    let Some(r) = Rehearsal::start().await else {
        return;
    };
    publish_the_compiler_on(&r, "ubuntu24.04");
    let o = r.act(
        "build-and-publish-slurm-tarball.yml",
        &[
            ("slurm_version", "25.11"),
            ("gpu_support", "false"),
            ("platforms", "ubuntu24.04"),
        ],
        None,
        // The pipeline builds every GCC of the catalog; the rehearsal runs one leg of them
        // (act's matrix filter), which is enough to exercise the wiring.
        |c| {
            c.args(["--matrix", "compiler_version:13.4.0"]);
        },
    );
    assert_green(
        &o,
        &["Slurm 25.11 tarball · GCC 13.4.0 · amd64 · ubuntu24.04"],
    );
    assert!(
        o.log
            .contains("Success - Main Install the published tarball"),
        "{}",
        tail(&o.log)
    );
    // tarball-publish checked the floor against the leg's platform and published under it.
    assert!(
        o.log.contains("glibc floor 2.") && !o.log.contains("no --platform"),
        "{}",
        tail(&o.log)
    );
    let leg = o
        .legs()
        .into_iter()
        .find(|l| l["compiler_version"] == "13.4.0")
        .unwrap();
    assert_eq!(
        leg["tarball_key"],
        "slurm-factory/ubuntu24.04/25.11/13.4.0/slurm-25.11-gcc13.4.0-ubuntu24.04-software.tar.gz"
    );
    assert!(
        o.log.contains(&format!(
            "Download: <{}>",
            leg["tarball_url"].as_str().unwrap()
        )) || o
            .log
            .contains("slurm-25.11-gcc13.4.0-ubuntu24.04-software.tar.gz"),
        "{}",
        tail(&o.log)
    );
    report_lists(&o, 1, &["13.4.0"]);
    assert!(
        o.log.contains(".tar.gz.stamp.json.sig"),
        "the tarball leg wrote no build stamp:\n{}",
        tail(&o.log)
    );

    // Planned again (the plan job alone): the published leg's stamp, read from the tarball
    // bucket's public URL, verifies against the pinned key and the leg is skipped; the other
    // GCC legs of the pipeline have no stamp and build.
    let again = r.act(
        "build-and-publish-slurm-tarball.yml",
        &[
            ("slurm_version", "25.11"),
            ("gpu_support", "false"),
            ("platforms", "ubuntu24.04"),
        ],
        None,
        |c| {
            c.args(["-j", "plan"]);
        },
    );
    assert!(again.success, "{}", tail(&again.log));
    assert!(
        again.log.contains(
            "Slurm 25.11 tarball · GCC 13.4.0 · amd64 · ubuntu24.04: skip (unchanged since"
        ),
        "{}",
        tail(&again.log)
    );
    let legs = again.legs();
    assert!(!legs.is_empty(), "{}", tail(&again.log));
    assert!(
        legs.iter().all(|l| l["compiler_version"] != "13.4.0"),
        "the published leg was scheduled again: {legs:?}"
    );
    assert!(
        again.log.contains("build (no stamp)"),
        "{}",
        tail(&again.log)
    );
}

/// The floor is enforced on every leg by default: dispatched with its defaults, the tarball
/// pipeline builds on el8 (glibc 2.28) and its tarball-publish step refuses the stand-in's
/// Slurm (this host's Debian 12 programs, which need a newer glibc), naming the file and the
/// symbol version, before anything is signed or uploaded; test-install never runs.
#[tokio::test(flavor = "multi_thread")]
async fn the_default_platform_refuses_a_tarball_above_its_glibc_floor() {
    let Some(r) = Rehearsal::start().await else {
        return;
    };
    publish_the_compiler(&r);
    let o = r.act(
        "build-and-publish-slurm-tarball.yml",
        &[("slurm_version", "25.11"), ("gpu_support", "false")],
        None,
        |c| {
            c.args(["--matrix", "compiler_version:13.4.0"]);
        },
    );
    assert!(!o.success, "{}", tail(&o.log));
    assert_eq!(o.legs()[0]["platform"], "el8");
    assert!(
        o.log
            .contains("Failure - Main Package and publish the tarball"),
        "tarball-publish did not fail:\n{}",
        tail(&o.log)
    );
    let refusal = o
        .log
        .lines()
        .find(|l| l.contains("::error::nothing was signed or uploaded"))
        .unwrap_or_else(|| panic!("no refusal in:\n{}", tail(&o.log)));
    assert!(
        refusal.contains(
            "but the catalog promises platform el8 (Rocky Linux 8) runs it with glibc 2.28"
        ) && refusal.contains("view/bin/")
            && refusal.contains("needs GLIBC_2."),
        "{refusal}"
    );
    assert!(
        !o.log.contains("Run Main Install the published tarball"),
        "test-install ran after a refused tarball:\n{}",
        tail(&o.log)
    );
    assert!(
        o.jobs
            .iter()
            .any(|(n, c)| n.ends_with("· el8") && c == "failure"),
        "{}",
        o.job_conclusions()
    );
}

/// Dropping one wiring of the generated compiler pipeline turns the rehearsal red, in the step
/// that depends on it: the pinned fingerprint test-install takes from preflight, the output
/// build-compiler hands to sign-and-upload, and the prefix sign-and-upload writes to.
#[tokio::test(flavor = "multi_thread")]
async fn dropping_a_wiring_turns_the_compiler_rehearsal_red() {
    let wf = "build-and-publish-compiler-buildcache.yml";
    let inputs = [("compiler_versions", "13.4.0")];
    for (edit, failing_step) in [
        (
            (
                "            ${{ steps.preflight.outputs.fingerprint }}\n",
                "            \n",
            ),
            "Install from the published buildcache",
        ),
        (
            (
                "source: ${{ steps.build.outputs.buildcache_path }}",
                "source: ${{ steps.build.outputs.buildcache }}",
            ),
            "Sign and upload the buildcache",
        ),
        (
            (
                "          source: ${{ steps.build.outputs.buildcache_path }}\n          destination: s3://slurm-factory-spack-buildcache-4b670/${{ matrix.buildcache_prefix }}",
                "          source: ${{ steps.build.outputs.buildcache_path }}\n          destination: s3://slurm-factory-spack-buildcache-4b670/${{ matrix.artifact_name }}",
            ),
            "Install from the published buildcache",
        ),
    ] {
        // A fresh bucket each time: nothing an earlier run published can make it pass.
        let Some(r) = Rehearsal::start().await else {
            return;
        };
        let o = r.act_mutated(wf, edit, &inputs);
        assert!(
            !o.success,
            "the rehearsal stayed green without {:?}:\n{}",
            edit.0,
            tail(&o.log)
        );
        assert!(
            o.log.contains(&format!("Failure - Main {failing_step}")),
            "without {:?} the step {failing_step:?} did not fail:\n{}",
            edit.0,
            tail(&o.log)
        );
        assert!(
            o.jobs
                .iter()
                .any(|(n, c)| n.contains("GCC 13.4.0") && c == "failure"),
            "{}",
            o.job_conclusions()
        );
    }
}

/// A malformed signing key fails the leg in preflight, before any build step runs, and the
/// report still runs last. (Our real build-slurm is in place: nothing of ours is stood in for.)
#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_signing_key_fails_in_preflight_before_any_build_step() {
    let Some(r) = Rehearsal::start().await else {
        return;
    };
    let o = r.act(
        "build-and-publish-slurm-all.yml",
        &slurm_all("25.11", "all"),
        None,
        |c| {
            // act keeps the last value given for a secret.
            c.args(["--secret", "GPG_PRIVATE_KEY=this is not an OpenPGP key"]);
        },
    );
    assert!(!o.success, "{}", tail(&o.log));
    assert!(
        o.log.contains("Failure - Main Preflight"),
        "the preflight step did not fail:\n{}",
        tail(&o.log)
    );
    assert!(
        !o.log.contains("Run Main Build Slurm"),
        "a build step ran after a failed preflight:\n{}",
        tail(&o.log)
    );
    assert!(
        o.jobs
            .iter()
            .any(|(n, c)| n == "Run report" && c == "success"),
        "the report job did not run last:\n{}",
        o.job_conclusions()
    );
}

/// `publish: none` skips preflight, signing and test-install; with no pinned key the leg
/// builds its toolchain from source (the stand-in Spack says which it was asked) and is green.
#[tokio::test(flavor = "multi_thread")]
async fn publish_none_builds_the_toolchain_from_source_and_publishes_nothing() {
    let Some(r) = Rehearsal::start().await else {
        return;
    };
    let o = r.act(
        "build-and-publish-slurm-all.yml",
        &slurm_all("25.11", "none"),
        None,
        |_| {},
    );
    assert_green(&o, &["Slurm 25.11 · GCC 13.4.0"]);
    assert!(
        o.log.contains("built from source (stand-in)"),
        "{}",
        tail(&o.log)
    );
    assert!(!o.log.contains("Run Main Preflight"), "{}", tail(&o.log));
    assert!(
        !o.log.contains("Run Main Sign and upload"),
        "{}",
        tail(&o.log)
    );
    assert_eq!(o.oidc_requests, 0, "nothing may ask for AWS credentials");
}
