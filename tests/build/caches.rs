//! Caches that survive between runs (issue 25), against the REAL Docker engine with the
//! stand-in image of tests/docker-stub (its `spack` is a stand-in: it "fetches" sources the way
//! Spack does, from the source mirror or a made-up download, and says which), and against the
//! vendored REAL Spack 1.0 for the source cache layout.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sha2::{Digest, Sha256};
use slurm_factory::builder::caches::sources::{named_sha256, promote};
use slurm_factory::builder::caches::{CacheDir, CacheSettings, IMAGES_DIR, SOURCES_DIR};
use slurm_factory::builder::{BuildOptions, execute, render_environment};
use slurm_factory::docker::BuildContext;
use slurm_factory::spack::{Area, Job, Layout, RunId};

use crate::common::{repo_root, under_ci};
use crate::engine::{Cleanup, actions_runner, docker_or_skip, run_id, slurm_job, stub_context};

/// A stand-in context whose image tag no other test builds (an extra file changes the
/// context digest), so removing the image cannot disturb a test running at the same time.
fn own_stub_context(test: &str) -> tempfile::TempDir {
    let ctx = stub_context("ok");
    std::fs::write(
        ctx.path().join("nonce"),
        format!("{test} {}\n", std::process::id()),
    )
    .unwrap();
    ctx
}

/// Removes the image when the test ends, even when it panics.
struct RemoveImage(String);

impl Drop for RemoveImage {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rmi", "-f", &self.0]).output();
    }
}

fn has_image(tag: &str) -> bool {
    Command::new("docker")
        .args(["image", "inspect", tag])
        .output()
        .unwrap()
        .status
        .success()
}

fn options(ctx: &Path, out: &Path, run: &str, cache: &Path, no_cache: bool) -> BuildOptions {
    BuildOptions {
        output_dir: out.to_path_buf(),
        docker_context: Some(ctx.to_path_buf()),
        no_cache,
        timeout: Duration::from_secs(300),
        user: None,
        run_id: RunId::new(run).unwrap(),
        caches: CacheSettings {
            root: Some(cache.to_path_buf()),
            ..CacheSettings::off()
        },
    }
}

/// (a) The first build saves its image under its context digest; after `docker rmi`, the
/// second build of the same leg loads it from the cache directory and does not build; with
/// `no_cache` the cache is bypassed and the image is built.
#[tokio::test(flavor = "multi_thread")]
async fn a_second_build_loads_the_image_from_the_cache_instead_of_building_it() {
    if !docker_or_skip() {
        return;
    }
    let ctx = own_stub_context("image-cache");
    let tag = BuildContext::from_dir(ctx.path()).unwrap().image_tag();
    let digest = BuildContext::from_dir(ctx.path())
        .unwrap()
        .digest()
        .to_owned();
    let _rmi = RemoveImage(tag.clone());
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("runner-cache");
    let job = slurm_job();
    let archive = cache.join(IMAGES_DIR).join(format!("{digest}.tar"));

    let run = |n: &str, no_cache: bool| {
        let run = run_id(&format!("imgcache{n}"));
        (
            options(ctx.path(), &work.path().join("out"), &run, &cache, no_cache),
            Cleanup(run),
        )
    };
    let (first, _c1) = run("1", false);
    let (runner, cap) = actions_runner();
    let outcome = execute(&job, &first, &runner).await.unwrap();
    assert_eq!(outcome.failure, None, "{}", cap.text());
    assert!(
        cap.text().contains("Saved the build image"),
        "{}",
        cap.text()
    );
    assert!(archive.is_file(), "no {}", archive.display());
    assert!(
        outcome
            .layout
            .host(Area::Logs)
            .join("image-build.log")
            .is_file()
    );

    let rmi = Command::new("docker")
        .args(["rmi", "-f", &tag])
        .output()
        .unwrap();
    assert!(rmi.status.success(), "{rmi:?}");
    assert!(!has_image(&tag));

    let (second, _c2) = run("2", false);
    let (runner, cap) = actions_runner();
    let outcome = execute(&job, &second, &runner).await.unwrap();
    assert_eq!(outcome.failure, None, "{}", cap.text());
    assert!(
        cap.text().contains("Loaded the build image") && cap.text().contains("not rebuilt"),
        "{}",
        cap.text()
    );
    assert!(
        !cap.text().contains("Saved the build image"),
        "{}",
        cap.text()
    );
    // Nothing was built: no image build log, and the steps ran in the loaded image.
    let log = outcome.layout.host(Area::Logs).join("image-build.log");
    assert!(!log.exists(), "the image was built: {}", log.display());
    assert_eq!(outcome.image.as_deref(), Some(tag.as_str()));
    assert!(outcome.layout.host(Area::View).join("bin/sinfo").is_file());
    assert!(has_image(&tag));

    // `no_cache` bypasses the image cache: the image is built although the cache has it.
    Command::new("docker")
        .args(["rmi", "-f", &tag])
        .output()
        .unwrap();
    let (third, _c3) = run("3", true);
    let (runner, cap) = actions_runner();
    let outcome = execute(&job, &third, &runner).await.unwrap();
    assert_eq!(outcome.failure, None, "{}", cap.text());
    assert!(
        !cap.text().contains("Loaded the build image"),
        "{}",
        cap.text()
    );
    assert!(
        outcome
            .layout
            .host(Area::Logs)
            .join("image-build.log")
            .is_file()
    );
}

/// An archive in the image cache that would tag anything besides the leg's image is not
/// loaded (it is removed, and the image is built).
#[tokio::test(flavor = "multi_thread")]
async fn an_image_archive_that_tags_other_images_is_not_loaded() {
    if !docker_or_skip() {
        return;
    }
    let ctx = own_stub_context("image-cache-hostile");
    let bctx = BuildContext::from_dir(ctx.path()).unwrap();
    let tag = bctx.image_tag();
    let _rmi = RemoveImage(tag.clone());
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("runner-cache");
    let images = CacheDir::open(&cache, IMAGES_DIR, 1 << 30).unwrap();
    // A planted archive: its manifest tags another image too.
    let archive = images.path().join(format!("{}.tar", bctx.digest()));
    let mut b = tar::Builder::new(Vec::new());
    let manifest =
        format!(r#"[{{"Config":"c.json","RepoTags":["{tag}","busybox:latest"],"Layers":[]}}]"#);
    let mut h = tar::Header::new_gnu();
    h.set_size(manifest.len() as u64);
    h.set_mode(0o644);
    b.append_data(&mut h, "manifest.json", manifest.as_bytes())
        .unwrap();
    std::fs::write(&archive, b.into_inner().unwrap()).unwrap();

    let run = run_id("imgcache-hostile");
    let _cleanup = Cleanup(run.clone());
    let opts = options(ctx.path(), &work.path().join("out"), &run, &cache, false);
    let (runner, cap) = actions_runner();
    let outcome = execute(&slurm_job(), &opts, &runner).await.unwrap();
    assert_eq!(outcome.failure, None, "{}", cap.text());
    let text = cap.text();
    assert!(
        text.contains("::warning::the cached build image could not be used")
            && text.contains("busybox:latest"),
        "{text}"
    );
    assert!(!text.contains("Loaded the build image"), "{text}");
    assert!(text.contains("not exactly"), "{text}");
    // The bad archive was replaced by the image this build saved.
    assert!(text.contains("Saved the build image"), "{text}");
}

fn sha256(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// Every regular file under `root`, relative.
fn files(root: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = walkdir::WalkDir::new(root)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| e.path().strip_prefix(root).unwrap().to_path_buf())
        .collect();
    out.sort();
    out
}

/// (b) Two legs share the runner's source cache at once: both finish, and the cache holds
/// each source once, whole. (c, stand-in) A re-run of a leg fetches every source from the
/// shared cache and downloads none.
#[tokio::test(flavor = "multi_thread")]
async fn two_legs_share_the_source_cache_and_a_rerun_downloads_nothing() {
    if !docker_or_skip() {
        return;
    }
    let ctx = stub_context("ok");
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("runner-cache");
    let cpu = slurm_job();
    let mut gpu = slurm_job();
    if let Job::Slurm(s) = &mut gpu {
        s.gpu = true;
    }
    let (ra, rb) = (run_id("srccache-a"), run_id("srccache-b"));
    let (_ca, _cb) = (Cleanup(ra.clone()), Cleanup(rb.clone()));
    let out = work.path().join("out");
    let (oa, ob) = (
        options(ctx.path(), &out, &ra, &cache, false),
        options(ctx.path(), &out, &rb, &cache, false),
    );
    let ((runner_a, cap_a), (runner_b, cap_b)) = (actions_runner(), actions_runner());
    let (a, b) = tokio::join!(execute(&cpu, &oa, &runner_a), execute(&gpu, &ob, &runner_b));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.failure, None, "{}", cap_a.text());
    assert_eq!(b.failure, None, "{}", cap_b.text());
    for cap in [&cap_a, &cap_b] {
        assert!(
            cap.text().contains("Source cache: ") && !cap.text().contains("was not added"),
            "{}",
            cap.text()
        );
    }

    // slurm and munge (both legs) and nvml (the GPU leg): each once, each whole.
    let shared = cache.join(SOURCES_DIR);
    let held = files(&shared);
    assert_eq!(held.len(), 3, "{held:?}");
    for rel in &held {
        let rel = rel.to_str().unwrap();
        assert!(rel.starts_with("_source-cache/archive/"), "{rel}");
        let bytes = std::fs::read(shared.join(rel)).unwrap();
        assert_eq!(Some(sha256(&bytes).as_str()), named_sha256(rel), "{rel}");
    }
    // No temporary file is left behind either.
    let all: Vec<_> = walkdir::WalkDir::new(&shared)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| !e.file_type().is_dir())
        .collect();
    assert_eq!(all.len(), 3);

    // A re-run of the CPU leg: every source comes from the shared cache (mounted read-only
    // as Spack's source mirror), none is downloaded.
    let rc = run_id("srccache-c");
    let _cc = Cleanup(rc.clone());
    let (runner, cap) = actions_runner();
    let again = execute(
        &cpu,
        &options(ctx.path(), &out, &rc, &cache, false),
        &runner,
    )
    .await
    .unwrap();
    assert_eq!(again.failure, None, "{}", cap.text());
    let text = cap.text();
    assert!(!text.contains("downloaded (stand-in)"), "{text}");
    for name in ["slurm", "munge"] {
        assert!(
            text.contains(&format!(
                "{name}: fetched from the source mirror file:///slurm-factory/source-mirror/_source-cache/archive/"
            )),
            "{text}"
        );
    }
    assert!(text.contains("0 new file(s) added"), "{text}");
    assert_eq!(files(&shared), held);
}

/// The vendored builtin package repository (listed so Spack never tries to clone one).
fn builtin_repo() -> PathBuf {
    repo_root().join(".spack/spack-packages-v2025.07.0/repos/spack_repo/builtin")
}

/// The vendored real Spack and its Python, or `None` after saying why the test is skipped
/// (under CI a missing Spack fails).
fn real_spack() -> Option<(PathBuf, PathBuf)> {
    let spack = repo_root().join(".spack/spack-1.0.0/bin/spack");
    let python = std::env::var_os("SLURM_FACTORY_VENV")
        .map(|v| PathBuf::from(v).join("bin/python"))
        .unwrap_or_else(|| repo_root().join(".venv/bin/python"));
    if spack.is_file() && python.is_file() && builtin_repo().is_dir() {
        return Some((spack, python));
    }
    assert!(
        !under_ci(),
        "the vendored Spack ({}) or its Python ({}) is missing: run scripts/setup-spack",
        spack.display(),
        python.display()
    );
    eprintln!("skipped: no vendored Spack (scripts/setup-spack); under CI this fails");
    None
}

/// What Spack does to fetch a package's source (`PackageBase.do_fetch`: `stage.fetch()`,
/// `stage.check()`, `stage.cache_local()`), on a stage built as `_make_root_stage` builds it
/// (the mirror layout of the fetcher, the source mirrors of the configuration). Driven through
/// `spack python`, so concretization (minutes) is not needed.
const FETCH: &str = r#"
import sys
import spack.fetch_strategy as fs
import spack.mirrors.layout
import spack.mirrors.mirror
import spack.stage

url, sha = sys.argv[1], sys.argv[2]
fetcher = fs.URLFetchStrategy(url=url, checksum=sha)
layout = spack.mirrors.layout.default_mirror_layout(fetcher, "tiny/tiny-1.0")
mirrors = spack.mirrors.mirror.MirrorCollection(source=True).values()
with spack.stage.Stage(fetcher, mirror_paths=layout, mirrors=mirrors) as stage:
    stage.fetch()
    stage.check()
    stage.cache_local()
    print("FETCHED-FROM", stage.fetcher.url)
"#;

/// Runs [`FETCH`] with real Spack in an environment whose source cache is `leg` and whose
/// source mirror is the shared cache, named and configured as the build's environment does.
fn spack_fetch(work: &Path, leg: &Path, shared: &Path, url: &str, sha: &str) -> String {
    let (spack, python) = real_spack().unwrap();
    let env = work.join(format!(
        "env-{}",
        leg.file_name().unwrap().to_string_lossy()
    ));
    std::fs::create_dir_all(&env).unwrap();
    std::fs::write(
        env.join("spack.yaml"),
        format!(
            "spack:\n  specs: []\n  repos:\n    builtin: {}\n  config:\n    source_cache: {}\n    misc_cache: {}\n    build_stage: [{}]\n    url_fetch_method: urllib\n  mirrors:\n    slurm-factory-sources:\n      url: file://{}\n      binary: false\n      source: true\n      signed: false\n  view: false\n",
            builtin_repo().display(),
            leg.display(),
            work.join("misc").display(),
            work.join("stage").display(),
            shared.display()
        ),
    )
    .unwrap();
    let script = work.join("fetch.py");
    std::fs::write(&script, FETCH).unwrap();
    let home = work.join("home");
    // Offline when this machine can make a network namespace (as scripts/real-slurm does).
    let offline = Command::new("unshare")
        .args(["--net", "true"])
        .output()
        .is_ok_and(|o| o.status.success());
    let mut cmd = if offline {
        let mut c = Command::new("unshare");
        c.arg("--net").arg(&spack);
        c
    } else {
        Command::new(&spack)
    };
    let out = cmd
        .arg("-e")
        .arg(&env)
        .arg("python")
        .arg(&script)
        .args([url, sha])
        .env("SPACK_PYTHON", &python)
        .env("HOME", &home)
        .env("SPACK_USER_CONFIG_PATH", home.join(".spack"))
        .env("SPACK_USER_CACHE_PATH", home.join(".spack-cache"))
        .env("SPACK_DISABLE_LOCAL_CONFIG", "1")
        .env_remove("SPACK_ROOT")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "spack python failed:\n{text}");
    assert!(
        !text.contains("Warning") && !text.contains("Error"),
        "{text}"
    );
    text
}

/// (c) With real Spack 1.0: a leg fetches a source (from its origin) into its own source
/// cache; the library promotes it into the shared cache; the origin is then deleted, and the
/// next leg, with an empty source cache of its own and the shared cache as its source mirror
/// (as the build configures it), gets the source from the shared cache: nothing is downloaded,
/// and Spack checks the checksum of what it read.
#[test]
fn real_spack_reads_the_promoted_source_cache_and_downloads_nothing() {
    if real_spack().is_none() {
        return;
    }
    // The build's environment names the same mirror, source-only, at the mounted cache.
    let layout = Layout::new(
        Path::new("/out"),
        slurm_job().namespace(&RunId::new("1-1").unwrap()),
    )
    .unwrap();
    let yaml = render_environment(&slurm_job(), &layout).unwrap();
    assert!(
        yaml.contains(
            "    slurm-factory-sources:\n      url: file:///slurm-factory/source-mirror\n      binary: false\n      source: true\n"
        ),
        "{yaml}"
    );

    let work = tempfile::tempdir().unwrap();
    let origin = work.path().join("origin");
    std::fs::create_dir_all(&origin).unwrap();
    let tarball = origin.join("tiny-1.0.tar.gz");
    {
        let gz = flate2::write::GzEncoder::new(
            std::fs::File::create(&tarball).unwrap(),
            flate2::Compression::default(),
        );
        let mut b = tar::Builder::new(gz);
        let body = b"a tiny source\n";
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, "tiny-1.0/README", &body[..]).unwrap();
        b.into_inner().unwrap().finish().unwrap();
    }
    let bytes = std::fs::read(&tarball).unwrap();
    let sha = sha256(&bytes);
    let url = format!("file://{}", tarball.display());
    let shared = CacheDir::open(&work.path().join("runner-cache"), SOURCES_DIR, 1 << 30).unwrap();

    // A runner without caches: the mirror directory does not exist, which is only a miss.
    let leg0 = work.path().join("leg0");
    let missing = work.path().join("no-runner-cache");
    let off = spack_fetch(work.path(), &leg0, &missing, &url, &sha);
    assert!(off.contains(&format!("FETCHED-FROM {url}")), "{off}");

    let leg1 = work.path().join("leg1");
    let first = spack_fetch(work.path(), &leg1, shared.path(), &url, &sha);
    assert!(first.contains(&format!("FETCHED-FROM {url}")), "{first}");
    let p = promote(&leg1, &shared, true).unwrap();
    let rel = format!("_source-cache/archive/{}/{sha}.tar.gz", &sha[..2]);
    assert_eq!(p.added, std::slice::from_ref(&rel), "{p:?}");

    std::fs::remove_file(&tarball).unwrap();
    let leg2 = work.path().join("leg2");
    let second = spack_fetch(work.path(), &leg2, shared.path(), &url, &sha);
    assert!(
        second.contains(&format!(
            "FETCHED-FROM file://{}",
            shared.path().join(&rel).display()
        )),
        "{second}"
    );
    assert_eq!(std::fs::read(leg2.join(&rel)).unwrap(), bytes);
    // The second leg offers the cache nothing new.
    let p = promote(&leg2, &shared, true).unwrap();
    assert!(p.added.is_empty() && p.reused == [rel], "{p:?}");
}
