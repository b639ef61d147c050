//! The build orchestration against the REAL Docker engine. No registry is reachable, so the image
//! is built locally FROM scratch with Debian's static busybox and a stand-in `spack` script
//! (tests/docker-stub/, labelled as a stand-in: real Spack builds need network and hours). It is
//! passed with `--docker-context`, the documented flag for custom build images.
//!
//! Without a reachable engine these tests fail when `CI` is set and are skipped otherwise.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use slurm_factory::builder::caches::CacheSettings;
use slurm_factory::builder::{BuildOptions, execute};
use slurm_factory::catalog::{Arch, Catalog};
use slurm_factory::docker::{
    BuildContext, Cancel, Engine, Failure, ImageBuild, LABEL_RUN, UserSpec,
};
use slurm_factory::gha::Runner;
use slurm_factory::spack::{Area, Job, RunId, SlurmJobRequest};

use crate::common::{in_actions, repo_root, under_ci};

/// Whether a Docker engine answers; otherwise skip (or fail under CI) with the reason.
pub(crate) fn docker_or_skip() -> bool {
    let out = Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output();
    let reason = match out {
        Ok(o) if o.status.success() => return true,
        Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_owned(),
        Err(e) => format!("the docker CLI cannot run: {e}"),
    };
    if under_ci() {
        panic!("no reachable Docker engine ({reason}); the build tests need one under CI");
    }
    eprintln!("skipped: no reachable Docker engine ({reason}); under CI this fails");
    false
}

/// Builds a stand-in context for `mode` (ok, fail or sleep) in a temporary directory.
pub(crate) fn stub_context(mode: &str) -> tempfile::TempDir {
    let busybox = Path::new("/bin/busybox");
    assert!(
        busybox.is_file(),
        "/bin/busybox is missing: install Debian's busybox-static (scripts/install-test-deps.sh)"
    );
    let d = tempfile::tempdir().unwrap();
    let stub = repo_root().join("tests/docker-stub");
    std::fs::copy(stub.join("Dockerfile"), d.path().join("Dockerfile")).unwrap();
    std::fs::copy(stub.join("spack"), d.path().join("spack")).unwrap();
    std::fs::copy(busybox, d.path().join("busybox")).unwrap();
    std::fs::write(d.path().join("mode"), format!("{mode}\n")).unwrap();
    copy_tree(
        &repo_root().join("tests/fixtures/spack-v3/unsigned"),
        &d.path().join("fixtures/unsigned"),
    );
    d
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

fn files_under(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                walk(root, &e.path(), out);
            } else {
                out.push((
                    e.path().strip_prefix(root).unwrap().to_path_buf(),
                    std::fs::read(e.path()).unwrap(),
                ));
            }
        }
    }
    walk(root, root, &mut out);
    out.sort();
    out
}

/// Containers carrying this run id, running or not (via the docker CLI, independent of us).
pub(crate) fn containers_of(run: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args(["ps", "-aq", "--filter", &format!("label={LABEL_RUN}={run}")])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// Removes this run's containers even when a test panics.
pub(crate) struct Cleanup(pub(crate) String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let ids = containers_of(&self.0);
        if !ids.is_empty() {
            let _ = Command::new("docker")
                .arg("rm")
                .arg("-f")
                .args(ids)
                .output();
        }
    }
}

/// A run id unique to this test process and test. Binaries get it as `GITHUB_RUN_ID` with
/// `GITHUB_RUN_ATTEMPT=1`, so their containers are labelled `<id>-1`: use [`attempt_label`].
pub(crate) fn run_id(test: &str) -> String {
    format!("t{}-{test}", std::process::id())
}

/// The run-id label value of a binary started with [`run_id`] and attempt 1.
fn attempt_label(run: &str) -> String {
    format!("{run}-1")
}

/// A runner that believes it is in Actions and records everything it prints.
#[derive(Clone, Default)]
pub(crate) struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

pub(crate) fn actions_runner() -> (Runner, Captured) {
    let cap = Captured::default();
    let runner = Runner::from_vars([("GITHUB_ACTIONS", "true")]).with_sink(Box::new(cap.clone()));
    (runner, cap)
}

pub(crate) fn slurm_job() -> Job {
    let mut job = SlurmJobRequest {
        slurm: "25.11".parse().unwrap(),
        gcc: "13.4.0".parse().unwrap(),
        gpu: false,
        arch: Arch("amd64".into()),
        platform: None,
        compiler_mirror: Some("file:///mirror/compilers".into()),
        slurm_mirror: None,
    }
    .resolve(&Catalog::embedded())
    .unwrap();
    // A Slurm build trusts only a pinned key: pin the fixture signer, as `--trusted-key` would.
    if let Job::Slurm(s) = &mut job {
        s.trusted_keyring = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/spack-v3/keys/demo-signer.pub.asc"
        ))
        .unwrap();
    }
    job
}

/// Checks that every line containing `needle` is printed while workflow commands are stopped
/// (between `::stop-commands::TOKEN` and `::TOKEN::`), and that there is at least one.
fn assert_only_while_stopped(log: &str, needle: &str) {
    let mut token: Option<String> = None;
    let mut seen = 0;
    for line in log.lines() {
        if let Some(t) = line.strip_prefix("::stop-commands::") {
            assert!(token.is_none(), "nested stop-commands");
            token = Some(t.to_owned());
            continue;
        }
        if let Some(t) = &token
            && line == format!("::{t}::")
        {
            token = None;
            continue;
        }
        if line.contains(needle) {
            assert!(
                token.is_some(),
                "{line:?} was printed while workflow commands were active:\n{log}"
            );
            seen += 1;
        }
    }
    assert!(token.is_none(), "workflow commands were never resumed");
    assert!(seen > 0, "{needle:?} never appeared in:\n{log}");
}

/// Image build, mounts, streamed logs whose injected `::error::` cannot become an annotation,
/// artifacts extracted through the mounts, outputs and summary, and no container left behind.
#[test]
fn stub_build_streams_contained_logs_and_extracts_artifacts() {
    if !docker_or_skip() {
        return;
    }
    let ctx = stub_context("ok");
    let work = tempfile::tempdir().unwrap();
    let run = run_id("ok");
    let label = attempt_label(&run);
    let _cleanup = Cleanup(label.clone());
    let out = in_actions("build-slurm", work.path())
        .arg("--trusted-key")
        .arg(repo_root().join("tests/fixtures/spack-v3/keys/demo-signer.pub.asc"))
        .env("GITHUB_RUN_ID", &run)
        .env("GITHUB_RUN_ATTEMPT", "1")
        .arg("--docker-context")
        .arg(ctx.path())
        .arg("--output-dir")
        .arg(work.path().join("out"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_only_while_stopped(&stdout, "injected by the stub spack");
    assert_only_while_stopped(&stdout, "::set-output name=pwned");
    assert!(stdout.contains("::group::concretize: "), "{stdout}");

    // Outputs point at the artifacts, which came out through the mounts.
    let outputs = std::fs::read_to_string(work.path().join("output")).unwrap();
    let get = |k: &str| -> PathBuf {
        let start = outputs
            .find(&format!("{k}<<"))
            .unwrap_or_else(|| panic!("no {k} in {outputs}"));
        PathBuf::from(outputs[start..].lines().nth(1).unwrap())
    };
    assert!(!outputs.contains("pwned"));
    let cache = get("buildcache_path");
    assert_eq!(
        files_under(&cache),
        files_under(&repo_root().join("tests/fixtures/spack-v3/unsigned")),
        "the buildcache is not the fixture the stand-in pushed"
    );
    let view_sinfo = get("view_path").join("bin/sinfo");
    let module = get("modules_path").join("slurm/25.11.6.lua");
    assert!(module.is_file(), "{}", module.display());
    let installed = std::fs::read_dir(
        get("view_path")
            .parent()
            .unwrap()
            .join("install/__spack_path_placeholder__/linux-x86_64_v2/slurm-25.11.6-stubhash/bin"),
    )
    .unwrap()
    .next()
    .unwrap()
    .unwrap()
    .path();
    assert_eq!(
        std::fs::metadata(&view_sinfo).unwrap().ino(),
        std::fs::metadata(&installed).unwrap().ino(),
        "the view must hardlink the install tree"
    );
    assert!(get("spack_lock").is_file());
    let log = std::fs::read_to_string(get("build_log")).unwrap();
    assert!(log.contains("==> step install exited with code 0"), "{log}");
    assert!(outputs.contains("packages_built<<") && outputs.contains("\n1\n"));

    // Owned by the invoking user (this process).
    let me = UserSpec::current().unwrap();
    for p in [&view_sinfo, &module, &cache] {
        let m = std::fs::metadata(p).unwrap();
        assert_eq!((m.uid(), m.gid()), (me.uid, me.gid), "{}", p.display());
    }
    let summary = std::fs::read_to_string(work.path().join("summary.md")).unwrap();
    assert!(
        summary.contains("succeeded") && summary.contains("1 built, 1 reused"),
        "{summary}"
    );
    assert!(
        stdout.contains(&label),
        "the run id label {label} is not what the build used"
    );
    assert!(containers_of(&label).is_empty(), "containers left behind");
}

/// `--publish` hands the finished cache to sign-and-upload: the stand-in build ends with a
/// signed file:// buildcache that `slurm-factory verify` accepts with the signer's public key.
#[test]
fn stub_build_with_publish_ends_with_a_verified_signed_cache() {
    if !docker_or_skip() {
        return;
    }
    let ctx = stub_context("ok");
    let work = tempfile::tempdir().unwrap();
    let run = run_id("publish");
    let label = attempt_label(&run);
    let _cleanup = Cleanup(label.clone());
    let keys = repo_root().join("tests/fixtures/spack-v3/keys");
    let mirror = work.path().join("mirror");
    let out = in_actions("build-slurm", work.path())
        .arg("--trusted-key")
        .arg(repo_root().join("tests/fixtures/spack-v3/keys/demo-signer.pub.asc"))
        .env("GITHUB_RUN_ID", &run)
        .env("GITHUB_RUN_ATTEMPT", "1")
        .arg("--docker-context")
        .arg(ctx.path())
        .arg("--output-dir")
        .arg(work.path().join("out"))
        .args(["--publish", "all", "--destination"])
        .arg(format!("file://{}", mirror.display()))
        .arg("--key-file")
        .arg(keys.join("demo-signer.sec.asc"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let outputs = std::fs::read_to_string(work.path().join("output")).unwrap();
    assert!(outputs.contains("specs-published<<"), "{outputs}");
    // Every output the build-slurm action re-exports is written (debug_bundle only on failure).
    let action: yaml_serde::Value = yaml_serde::from_str(
        &std::fs::read_to_string(repo_root().join("actions/build-slurm/action.yml")).unwrap(),
    )
    .unwrap();
    let written = crate::common::runner_file_map(&work.path().join("output"));
    for name in action["outputs"].as_mapping().unwrap().keys() {
        let name = name.as_str().unwrap();
        if name != "debug_bundle" {
            assert!(
                written.contains_key(name),
                "build-slurm does not write `{name}`: {outputs}"
            );
        }
    }
    assert!(
        stdout.contains("1A00B8893F4FAE1A76DB389DE145321FBC9F04BD"),
        "the signer's fingerprint is not reported: {stdout}"
    );
    let verify = crate::common::scrubbed("slurm-factory")
        .args(["verify", "--buildcache"])
        .arg(format!("file://{}", mirror.display()))
        .arg("--trusted-key")
        .arg(keys.join("demo-signer.pub.asc"))
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "verify refused the published cache: {}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    assert!(containers_of(&label).is_empty(), "containers left behind");
}

/// The containers run as the requested uid:gid, so everything written through the mounts is
/// owned by it (here a uid that is not this process's, made possible because tests run as root
/// on the development machine; as non-root the library refuses clearly instead).
#[tokio::test(flavor = "multi_thread")]
async fn outputs_are_owned_by_the_build_user() {
    if !docker_or_skip() {
        return;
    }
    let me = UserSpec::current().unwrap();
    let user = UserSpec {
        uid: 4242,
        gid: 4343,
    };
    let ctx = stub_context("ok");
    let work = tempfile::tempdir().unwrap();
    let run = run_id("owner");
    let _cleanup = Cleanup(run.clone());
    let opts = BuildOptions {
        output_dir: work.path().to_path_buf(),
        docker_context: Some(ctx.path().to_path_buf()),
        no_cache: false,
        timeout: Duration::from_secs(300),
        user: Some(user),
        run_id: RunId::new(&run).unwrap(),
        caches: CacheSettings::off(),
    };
    let (runner, cap) = actions_runner();
    let job = slurm_job();
    let result = execute(&job, &opts, &runner).await;
    if me.uid != 0 {
        let err = result.unwrap_err().to_string();
        assert!(err.contains("cannot hand"), "{err}");
        return;
    }
    let outcome = result.unwrap();
    assert_eq!(outcome.failure, None, "{}", cap.text());
    assert!(cap.text().contains("uid 4242 gid 4343"), "{}", cap.text());
    let l = &outcome.layout;
    for p in [
        l.host(Area::View).join("bin/sinfo"),
        l.host(Area::Modules).join("slurm/25.11.6.lua"),
        l.host(Area::Buildcache).join("v3/layout.json"),
        l.host(Area::Env).join("spack.lock"),
    ] {
        let m = std::fs::metadata(&p).unwrap();
        assert_eq!((m.uid(), m.gid()), (4242, 4343), "{}", p.display());
    }
    assert_eq!(outcome.stats.census.built.len(), 1);
    assert_eq!(outcome.stats.census.reused.len(), 1);
    assert!(containers_of(&run).is_empty());
}

/// A failing step propagates its exit code as a failure and leaves a debug bundle with Spack's
/// build logs.
#[test]
fn failing_step_writes_a_debug_bundle() {
    if !docker_or_skip() {
        return;
    }
    let ctx = stub_context("fail");
    let work = tempfile::tempdir().unwrap();
    let run = run_id("fail");
    let label = attempt_label(&run);
    let _cleanup = Cleanup(label.clone());
    let out = in_actions("build-slurm", work.path())
        .arg("--trusted-key")
        .arg(repo_root().join("tests/fixtures/spack-v3/keys/demo-signer.pub.asc"))
        .env("GITHUB_RUN_ID", &run)
        .env("GITHUB_RUN_ATTEMPT", "1")
        .arg("--docker-context")
        .arg(ctx.path())
        .arg("--output-dir")
        .arg(work.path().join("out"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("::error::step `install` failed with exit code 3"),
        "{stdout}"
    );
    let outputs = std::fs::read_to_string(work.path().join("output")).unwrap();
    let start = outputs
        .find("debug_bundle<<")
        .expect("no debug_bundle output");
    let bundle = PathBuf::from(outputs[start..].lines().nth(1).unwrap());
    let stage = bundle.join("stage/spack-stage-slurm-25-11-6-1-stubhash");
    assert!(
        std::fs::read_to_string(stage.join("spack-src/config.log"))
            .unwrap()
            .contains("configure: error: stub failure")
    );
    assert!(stage.join("spack-build-out.txt").is_file());
    assert!(stage.join("spack-build-env.txt").is_file());
    assert!(
        std::fs::read_to_string(bundle.join("build.log"))
            .unwrap()
            .contains("ProcessError")
    );
    assert!(bundle.join("spack.yaml").is_file() && bundle.join("spack.lock").is_file());
    // The steps after the failure did not run.
    assert!(!stdout.contains("::group::push:"), "{stdout}");
    let summary = std::fs::read_to_string(work.path().join("summary.md")).unwrap();
    assert!(summary.contains("failed: step `install` failed with exit code 3"));
    assert!(stdout.contains(&label));
    assert!(containers_of(&label).is_empty());
}

/// The job timeout stops and removes the running container.
#[tokio::test(flavor = "multi_thread")]
async fn timeout_stops_the_build_and_removes_its_container() {
    if !docker_or_skip() {
        return;
    }
    let ctx = stub_context("sleep");
    let work = tempfile::tempdir().unwrap();
    let run = run_id("timeout");
    let _cleanup = Cleanup(run.clone());
    // Build the image first so the timeout below measures the steps, not the image build.
    let engine = Engine::connect().await.unwrap();
    let (runner, cap) = actions_runner();
    let mut cancel = Cancel::install().unwrap();
    let bctx = BuildContext::from_dir(ctx.path()).unwrap();
    engine
        .build_image(
            &bctx,
            &ImageBuild {
                no_cache: false,
                log: work.path().join("image.log"),
                deadline: Instant::now() + Duration::from_secs(300),
                timeout: Duration::from_secs(300),
            },
            &runner,
            &mut cancel,
        )
        .await
        .unwrap()
        .unwrap();
    drop(cancel);

    let opts = BuildOptions {
        output_dir: work.path().join("out"),
        docker_context: Some(ctx.path().to_path_buf()),
        no_cache: false,
        timeout: Duration::from_secs(12),
        user: None,
        run_id: RunId::new(&run).unwrap(),
        caches: CacheSettings::off(),
    };
    let started = Instant::now();
    let outcome = execute(&slurm_job(), &opts, &runner).await.unwrap();
    let took = started.elapsed();
    match &outcome.failure {
        Some(Failure::TimedOut { step, timeout }) => {
            assert_eq!(step, "install");
            assert_eq!(*timeout, Duration::from_secs(12));
        }
        other => panic!("expected a timeout, got {other:?}\n{}", cap.text()),
    }
    assert!(took < Duration::from_secs(60), "took {took:?}");
    assert!(outcome.debug_bundle.is_some());
    assert!(
        outcome
            .error()
            .unwrap()
            .to_string()
            .contains("timeout of 12s ran out")
    );
    assert!(
        containers_of(&run).is_empty(),
        "the timed-out container is still there"
    );
}

/// SIGTERM (a cancelled run) stops and removes the container and fails the step.
#[test]
fn sigterm_cancels_and_leaves_no_container() {
    if !docker_or_skip() {
        return;
    }
    let ctx = stub_context("sleep");
    let work = tempfile::tempdir().unwrap();
    let run = run_id("sigterm");
    let label = attempt_label(&run);
    let _cleanup = Cleanup(label.clone());
    let mut child = in_actions("build-slurm", work.path())
        .arg("--trusted-key")
        .arg(repo_root().join("tests/fixtures/spack-v3/keys/demo-signer.pub.asc"))
        .env("GITHUB_RUN_ID", &run)
        .env("GITHUB_RUN_ATTEMPT", "1")
        .arg("--docker-context")
        .arg(ctx.path())
        .arg("--output-dir")
        .arg(work.path().join("out"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the install step's container runs.
    let started = Instant::now();
    loop {
        let out = Command::new("docker")
            .args([
                "ps",
                "-q",
                "--filter",
                &format!("label={LABEL_RUN}={label}"),
            ])
            .args(["--filter", "label=io.slurm-factory.step=install"])
            .output()
            .unwrap();
        if !String::from_utf8_lossy(&out.stdout).trim().is_empty() {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            panic!(
                "build-slurm exited early ({status}): {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "install never started"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let waited = Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(waited.elapsed() < Duration::from_secs(30));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("cancelled by SIGTERM during step `install`"),
        "{stdout}"
    );
    assert!(
        containers_of(&label).is_empty(),
        "a cancelled build left a container behind"
    );
}

/// Docker's layer cache is used by default and bypassed with `no_cache`.
#[tokio::test(flavor = "multi_thread")]
async fn no_cache_bypasses_the_layer_cache() {
    if !docker_or_skip() {
        return;
    }
    let ctx = stub_context("ok");
    let work = tempfile::tempdir().unwrap();
    let engine = Engine::connect().await.unwrap();
    let bctx = BuildContext::from_dir(ctx.path()).unwrap();
    let mut cancel = Cancel::install().unwrap();
    let (runner, _cap) = actions_runner();
    for (no_cache, name) in [(false, "a.log"), (false, "b.log"), (true, "c.log")] {
        let opts = ImageBuild {
            no_cache,
            log: work.path().join(name),
            deadline: Instant::now() + Duration::from_secs(300),
            timeout: Duration::from_secs(300),
        };
        let tag = engine
            .build_image(&bctx, &opts, &runner, &mut cancel)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(tag, bctx.image_tag());
    }
    let b = std::fs::read_to_string(work.path().join("b.log")).unwrap();
    let c = std::fs::read_to_string(work.path().join("c.log")).unwrap();
    assert!(
        b.contains("Using cache"),
        "second build did not use the cache:\n{b}"
    );
    assert!(
        !c.contains("Using cache"),
        "--no-cache still used the cache:\n{c}"
    );
    let labels = Command::new("docker")
        .args([
            "image",
            "inspect",
            "--format",
            "{{json .Config.Labels}}",
            &bctx.image_tag(),
        ])
        .output()
        .unwrap();
    let labels = String::from_utf8_lossy(&labels.stdout);
    assert!(
        labels.contains("\"io.slurm-factory.managed\":\"true\""),
        "{labels}"
    );
    assert!(
        labels.contains("\"io.slurm-factory.test\":\"stub\""),
        "{labels}"
    );
}

/// The artifact globs of every generated build pipeline match everything a failed build wrote
/// to its logs and debug bundle (issue 13: `**/debug-bundle*` matched nothing). The globs and
/// the paths come from one place (`Layout::artifact_globs`, `Area::ARTIFACTS`); this runs the
/// real failure path and the real generated workflows.
#[test]
fn the_pipelines_upload_every_file_of_a_failed_builds_debug_bundle() {
    if !docker_or_skip() {
        return;
    }
    let ctx = stub_context("fail");
    let work = tempfile::tempdir().unwrap();
    let run = run_id("artifacts");
    let label = attempt_label(&run);
    let _cleanup = Cleanup(label.clone());
    let out_dir = work.path().join("out");
    let out = in_actions("build-slurm", work.path())
        .env("GITHUB_RUN_ID", &run)
        .env("GITHUB_RUN_ATTEMPT", "1")
        .arg("--trusted-key")
        .arg(repo_root().join("tests/fixtures/spack-v3/keys/demo-signer.pub.asc"))
        .arg("--docker-context")
        .arg(ctx.path())
        .arg("--output-dir")
        .arg(&out_dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let bundle = out_dir
        .join("builds")
        .read_dir()
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
        .join(Area::Debug.dir());
    let bundle_files: Vec<PathBuf> = files_under(&bundle)
        .into_iter()
        .map(|(p, _)| bundle.join(p))
        .collect();
    for must in [
        "spack-build-out.txt",
        "spack-build-env.txt",
        "spack.yaml",
        "spack.lock",
        "build.log",
    ] {
        assert!(
            bundle_files.iter().any(|p| p.ends_with(must)),
            "the bundle has no {must}: {bundle_files:?}"
        );
    }
    let logs = bundle.parent().unwrap().join(Area::Logs.dir());
    let log_files: Vec<PathBuf> = files_under(&logs)
        .into_iter()
        .map(|(p, _)| logs.join(p))
        .collect();
    assert!(!log_files.is_empty());

    let generated = slurm_factory::workflows::render_all(&repo_root()).unwrap();
    let mut pipelines = 0;
    for f in generated
        .iter()
        .filter(|f| f.path.starts_with(".github/workflows"))
        .filter(|f| {
            f.path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("build-and-publish-"))
        })
    {
        let doc: yaml_serde::Value = yaml_serde::from_str(&f.contents).unwrap();
        let Some(steps) = doc["jobs"]["build"]["steps"].as_sequence() else {
            continue;
        };
        let upload = steps
            .iter()
            .find(|s| s["name"].as_str() == Some("Upload the build logs and the debug bundle"))
            .unwrap_or_else(|| panic!("{}: no upload step", f.path.display()));
        pipelines += 1;
        // `path:` lines are `build/${{ matrix.artifact_name }}/<glob>`, the leg's output_dir.
        let mut set = globset::GlobSetBuilder::new();
        for line in upload["with"]["path"].as_str().unwrap().lines() {
            let rel = line
                .trim()
                .strip_prefix("build/${{ matrix.artifact_name }}/")
                .unwrap_or_else(|| panic!("{}: {line}", f.path.display()));
            set.add(
                globset::GlobBuilder::new(&format!("{}/{rel}", out_dir.display()))
                    .literal_separator(true)
                    .build()
                    .unwrap(),
            );
        }
        let set = set.build().unwrap();
        for p in bundle_files.iter().chain(&log_files) {
            assert!(
                set.is_match(p),
                "{}: the upload globs miss {}",
                f.path.display(),
                p.display()
            );
        }
        // The old glob matched none of it.
        let old = globset::GlobBuilder::new(&format!("{}/**/debug-bundle*", out_dir.display()))
            .literal_separator(true)
            .build()
            .unwrap()
            .compile_matcher();
        assert!(bundle_files.iter().all(|p| !old.is_match(p)));
    }
    assert_eq!(pipelines, 3);
    assert!(containers_of(&label).is_empty());
}

/// The arguments of the README's first command (`cargo run ... --bin build-slurm -- <args>`),
/// read from README.md so the test runs exactly what a new user copies.
fn readme_first_command_args() -> Vec<String> {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let line = readme
        .lines()
        .find(|l| l.starts_with("cargo run ") && l.contains("--bin build-slurm"))
        .expect("README.md has no `cargo run ... --bin build-slurm` command");
    let (cargo, args) = line
        .split_once(" -- ")
        .expect("no `--` before the arguments");
    assert_eq!(
        cargo, "cargo run --release --locked --bin build-slurm",
        "the README's first command changed: {line}"
    );
    args.split_whitespace().map(str::to_owned).collect()
}

/// Runs the README's first command with the stand-in engine (`--docker-context`) and
/// `extra` arguments; returns stdout, the written outputs, the build's namespace directory and
/// the temporary directory that holds it.
fn run_readme_command(
    test: &str,
    extra: &[&str],
) -> (String, BTreeMap<String, String>, PathBuf, tempfile::TempDir) {
    let ctx = stub_context("ok");
    let work = tempfile::tempdir().unwrap();
    let run = run_id(test);
    let label = attempt_label(&run);
    let _cleanup = Cleanup(label.clone());
    let out = in_actions("build-slurm", work.path())
        .args(readme_first_command_args())
        .args(extra)
        .env("GITHUB_RUN_ID", &run)
        .env("GITHUB_RUN_ATTEMPT", "1")
        .arg("--docker-context")
        .arg(ctx.path())
        .arg("--output-dir")
        .arg(work.path().join("out"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let outputs = crate::common::runner_file_map(&work.path().join("output"));
    let ns = work.path().join("out/builds").join(&outputs["namespace"]);
    assert!(containers_of(&label).is_empty(), "containers left behind");
    (stdout, outputs, ns, work)
}

/// The README's first command, as written, with no key and no catalog pin: the toolchain is
/// built from source in the same container (a notice says so), nothing is trusted and no
/// buildcache is read, and every step up to the view and modules runs.
#[test]
fn readme_first_command_without_a_key_builds_the_toolchain_from_source() {
    if !docker_or_skip() {
        return;
    }
    assert!(
        slurm_factory::catalog::Catalog::embedded()
            .signing_fingerprints()
            .is_empty(),
        "this test is about a catalog without pins"
    );
    let (stdout, outputs, ns, _work) = run_readme_command("readme-source", &[]);
    assert_eq!(outputs["toolchain"], "source", "{outputs:?}");
    assert!(
        stdout.contains("::notice::no signing key is pinned for the compiler buildcache")
            && stdout.contains("about an hour more"),
        "{stdout}"
    );
    assert!(
        stdout.contains("::group::toolchain: Build the GCC toolchain from source"),
        "{stdout}"
    );
    assert!(stdout.contains("built from source (stand-in)"), "{stdout}");
    assert!(!stdout.contains("trust-keys"), "{stdout}");
    assert!(!stdout.contains("--cache-only"), "{stdout}");
    let toolchain_env = std::fs::read_to_string(ns.join("toolchain-env/spack.yaml")).unwrap();
    let env = std::fs::read_to_string(ns.join("env/spack.yaml")).unwrap();
    // Their one mirror is the runner's source cache (sources, which Spack checks against the
    // recipes' checksums), never a buildcache.
    let source_mirror = "  mirrors:\n    slurm-factory-sources:\n      url: file:///slurm-factory/source-mirror\n      binary: false\n      source: true\n      signed: false\n";
    for (name, text) in [("toolchain", &toolchain_env), ("slurm", &env)] {
        assert!(
            text.contains(source_mirror) && text.matches(" url: ").count() == 1,
            "the {name} environment of a build that trusts nothing reads a buildcache:\n{text}"
        );
    }
    assert!(
        toolchain_env.contains("gcc@13.4.0 +binutils"),
        "{toolchain_env}"
    );
    assert!(!ns.join("env/trusted-keys.asc").exists());
    assert!(ns.join("modules/slurm/25.11.6.lua").is_file());
}

/// The same command with the compiler cache's key pinned by fingerprint takes the toolchain
/// from the signed compiler buildcache (binaries only), trusting exactly that key.
#[test]
fn readme_first_command_with_a_pinned_key_uses_the_compiler_buildcache() {
    if !docker_or_skip() {
        return;
    }
    let mirror = format!(
        "file://{}",
        repo_root().join("tests/fixtures/spack-v3/signed").display()
    );
    let (stdout, outputs, ns, _work) = run_readme_command(
        "readme-cache",
        &[
            "--trusted-fingerprint",
            "1A00B8893F4FAE1A76DB389DE145321FBC9F04BD",
            "--compiler-buildcache",
            &mirror,
        ],
    );
    assert_eq!(outputs["toolchain"], "buildcache", "{outputs:?}");
    assert!(
        stdout.contains("::group::trust-keys: ")
            && stdout.contains(
                "::group::toolchain: Install the GCC toolchain from the compiler buildcache"
            ),
        "{stdout}"
    );
    assert!(
        stdout.contains("extracted from the compiler buildcache (stand-in)"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("::notice::no signing key is pinned"),
        "{stdout}"
    );
    let toolchain_env = std::fs::read_to_string(ns.join("toolchain-env/spack.yaml")).unwrap();
    assert!(toolchain_env.contains(&mirror), "{toolchain_env}");
    let keys = std::fs::read(ns.join("env/trusted-keys.asc")).unwrap();
    let mut trusted = slurm_factory::pgp::TrustedKeys::new();
    assert_eq!(
        trusted
            .add_armored(&keys)
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["1A00B8893F4FAE1A76DB389DE145321FBC9F04BD"]
    );
}
