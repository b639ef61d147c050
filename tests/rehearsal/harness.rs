//! The rehearsal harness: replays one generated workflow with act (host mode) through every job
//! and step, with the binaries this test suite built (no stand-in for any binary of ours).
//!
//! Only the outside world is stood in for, each on loopback and each said so here:
//! - the build image and Spack inside it: `tests/rehearsal/image` (FROM scratch, a stand-in
//!   `spack` script that "pushes" buildcaches real Spack 1.0 wrote, and Debian's Slurm as the
//!   "built" Slurm), handed to build-compiler/build-slurm with `SLURM_FACTORY_DOCKER_CONTEXT`;
//! - S3 and STS: a real `moto_server`;
//! - GitHub: the OIDC token endpoint, the REST API the report job reads (its jobs are the ones
//!   act is running, with the conclusions act printed), and the artifact actions (copies into a
//!   local directory, `--local-repository`);
//! - Slack: a webhook that records what it is sent;
//! - the public URLs of the catalog (the CDN and the tarball bucket's URL): a copy of the
//!   catalog whose `cdn_url` and `tarball_url` point at moto's path-style URLs, handed to every
//!   binary with `SLURM_FACTORY_CATALOG` (what a fork publishing to its own bucket would edit).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use crate::common;
use crate::harness::{Moto, client};

/// The OIDC request token act hands the binaries (GitHub's stand-in checks it).
const REQUEST_TOKEN: &str = "rehearsal-request-token";
/// The token act gives `github.token`; the GitHub API stand-in requires it.
const GITHUB_TOKEN: &str = "rehearsal-github-token";
/// The fixture signing key's fingerprint and long key id.
pub const FPR: &str = "1A00B8893F4FAE1A76DB389DE145321FBC9F04BD";

/// What the GitHub and Slack stand-ins saw and answer with.
#[derive(Default)]
struct Seen {
    /// Job name → conclusion, as act printed them (`success`/`failure`), in order of appearance.
    jobs: Vec<(String, String)>,
    /// Bodies POSTed to the Slack webhook.
    slack: Vec<String>,
    /// Requests to the OIDC endpoint that carried the right bearer.
    oidc: usize,
}

/// GitHub's and Slack's stand-in: one loopback HTTP/1.1 server.
struct Loopback {
    url: String,
    seen: Arc<Mutex<Seen>>,
}

/// A run id no other replay of this machine uses at the same time.
fn unique_run_id() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{}{n:04}", std::process::id())
}

fn job_json(
    template: &serde_json::Value,
    id: u64,
    name: &str,
    conclusion: &str,
) -> serde_json::Value {
    let mut j = template.clone();
    j["id"] = id.into();
    j["name"] = name.into();
    j["status"] = "completed".into();
    j["conclusion"] = conclusion.into();
    j["html_url"] =
        format!("https://github.com/vantagecompute/slurm-factory/actions/runs/1/job/{id}").into();
    j
}

fn respond(mut s: TcpStream, status: &str, body: &str) {
    let _ = write!(
        s,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

fn serve_one(s: TcpStream, seen: &Mutex<Seen>, template: &serde_json::Value) {
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    if r.read_line(&mut line).is_err() {
        return;
    }
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len.min(1 << 20)];
    let _ = r.read_exact(&mut body);
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET", "/oidc/token") => {
            if headers.get("authorization").map(String::as_str)
                != Some(&format!("Bearer {REQUEST_TOKEN}"))
            {
                return respond(s, "401 Unauthorized", "{}");
            }
            seen.lock().unwrap().oidc += 1;
            // An unsigned JWT-shaped token: moto's STS does not check it.
            respond(
                s,
                "200 OK",
                r#"{"count":1,"value":"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJyZWhlYXJzYWwifQ.c2lnbmF0dXJl"}"#,
            )
        }
        ("GET", p) if p.starts_with("/api/repos/") && p.ends_with("/jobs") => {
            let auth = headers
                .get("authorization")
                .map(String::as_str)
                .unwrap_or("");
            if !auth.ends_with(GITHUB_TOKEN) {
                return respond(s, "401 Unauthorized", r#"{"message":"Bad credentials"}"#);
            }
            let seen = seen.lock().unwrap();
            let jobs: Vec<_> = seen
                .jobs
                .iter()
                .enumerate()
                .map(|(i, (name, c))| job_json(template, 41_000_000_000 + i as u64, name, c))
                .collect();
            let body = serde_json::json!({"total_count": jobs.len(), "jobs": jobs});
            respond(s, "200 OK", &body.to_string())
        }
        ("POST", "/slack") => {
            seen.lock()
                .unwrap()
                .slack
                .push(String::from_utf8_lossy(&body).into_owned());
            respond(s, "200 OK", "ok")
        }
        _ => respond(s, "404 Not Found", r#"{"message":"Not Found"}"#),
    }
}

impl Loopback {
    fn start() -> Loopback {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Seen::default()));
        let template: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(
                common::repo_root().join("tests/fixtures/github/jobs-page-1.json"),
            )
            .unwrap(),
        )
        .unwrap();
        let template = template["jobs"][0].clone();
        let s2 = seen.clone();
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                serve_one(s, &s2, &template);
            }
        });
        Loopback { url, seen }
    }
}

/// One pipeline's rehearsal, with its stand-ins running.
pub struct Rehearsal {
    work: tempfile::TempDir,
    pub moto: Moto,
    loopback: Loopback,
    pub catalog: slurm_factory::catalog::Catalog,
    mutated: Mutex<Option<PathBuf>>,
}

/// What one act run printed, and what the stand-ins saw.
pub struct Outcome {
    pub success: bool,
    pub log: String,
    pub jobs: Vec<(String, String)>,
    pub slack: Vec<String>,
    pub oidc_requests: usize,
}

impl Outcome {
    /// The legs the plan job gave the build job (its `matrix` output, from act's log).
    pub fn legs(&self) -> Vec<serde_json::Value> {
        let m = self
            .log
            .lines()
            .find_map(|l| l.split_once("::set-output:: matrix=").map(|(_, m)| m))
            .unwrap_or_else(|| panic!("the plan job set no matrix output"));
        let m: serde_json::Value = serde_json::from_str(m).unwrap();
        m["include"].as_array().unwrap().clone()
    }

    /// The names of the jobs act reported, with how they ended.
    pub fn job_conclusions(&self) -> String {
        self.jobs
            .iter()
            .map(|(n, c)| format!("{n}: {c}"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// A stand-in for a third-party action under act (`--local-repository`): GitHub cannot be
/// reached, so actions/upload-artifact and actions/download-artifact copy into and out of a
/// local directory.
fn artifact_stub(dir: &Path, store: &Path, upload: bool) {
    std::fs::create_dir_all(dir).unwrap();
    let script = if upload {
        format!(
            "mkdir -p '{store}/'\"$NAME\" && while IFS= read -r p; do [ -z \"$p\" ] && continue; if [ -d \"$p\" ]; then cp -R \"$p\"/. '{store}/'\"$NAME\"/; elif [ -e \"$p\" ]; then cp \"$p\" '{store}/'\"$NAME\"/; fi; done <<< \"$SRC\"",
            store = store.display()
        )
    } else {
        format!(
            "mkdir -p \"$DEST\" && cp -R '{store}/'\"$NAME\"/. \"$DEST\"/",
            store = store.display()
        )
    };
    let env = if upload {
        "        NAME: ${{ inputs.name }}\n        SRC: ${{ inputs.path }}\n"
    } else {
        "        NAME: ${{ inputs.name }}\n        DEST: ${{ inputs.path }}\n"
    };
    std::fs::write(
        dir.join("action.yml"),
        format!(
            "name: stand-in\ndescription: local stand-in under act (GitHub cannot be reached)\ninputs:\n  name: {{ required: false }}\n  path: {{ required: false }}\n  retention-days: {{ required: false }}\n  if-no-files-found: {{ required: false }}\nruns:\n  using: composite\n  steps:\n    - shell: bash\n      env:\n{env}      run: |\n        {script}\n"
        ),
    )
    .unwrap();
}

fn pinned(action: &str) -> String {
    let pins: yaml_serde::Value = yaml_serde::from_str(
        &std::fs::read_to_string(common::repo_root().join("workflows-src/pins.yaml")).unwrap(),
    )
    .unwrap();
    format!(
        "{action}@{}",
        pins["actions"][action]["sha"].as_str().unwrap()
    )
}

fn copy_tree(from: &Path, to: &Path) {
    let st = Command::new("cp")
        .arg("-R")
        .arg(format!("{}/.", from.display()))
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success(), "cp -R {} {}", from.display(), to.display());
}

/// Whether the Docker engine answers (else the rehearsal is skipped; under CI that fails).
fn docker_ok() -> bool {
    let ok = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            !common::under_ci(),
            "the Docker engine is required under CI"
        );
        eprintln!("skipped: no Docker engine");
    }
    ok
}

impl Rehearsal {
    /// The runner's cache directory the replayed builds are given (`SLURM_FACTORY_CACHE_DIR`).
    pub fn runner_cache(&self) -> PathBuf {
        self.work.path().join("runner-cache")
    }

    /// Starts the stand-ins, or `None` when a required tool is missing outside CI.
    pub async fn start() -> Option<Rehearsal> {
        common::require_tool("act")?;
        if !docker_ok() {
            return None;
        }
        let moto = Moto::start().await?;
        let work = tempfile::tempdir().unwrap();
        let text = std::fs::read_to_string(common::repo_root().join("catalog.yaml")).unwrap();
        let base = slurm_factory::catalog::Catalog::embedded();
        let c = client(&moto.endpoint).await;
        // Both buckets are public for reading, as production serves them (CDN, public bucket).
        for b in [
            &base.publish.buildcache_bucket,
            &base.publish.tarball_bucket,
        ] {
            c.create_bucket().bucket(b.as_str()).send().await.unwrap();
            let policy = serde_json::json!({
                "Version": "2012-10-17",
                "Statement": [{
                    "Effect": "Allow",
                    "Principal": "*",
                    // moto checks a HEAD as s3:HeadObject.
                    "Action": ["s3:GetObject", "s3:HeadObject"],
                    "Resource": format!("arn:aws:s3:::{b}/*"),
                }],
            });
            c.put_bucket_policy()
                .bucket(b.as_str())
                .policy(policy.to_string())
                .send()
                .await
                .unwrap();
        }
        // The catalog a fork would edit: its public URLs are moto's path-style URLs.
        let text = text
            .replace(
                &format!("cdn_url: {}", base.publish.cdn_url),
                &format!(
                    "cdn_url: {}/{}",
                    moto.endpoint, base.publish.buildcache_bucket
                ),
            )
            // The Slurm the slurm-all rehearsal installs is the real 24.11.5 that
            // scripts/real-slurm built (release tag 24-11-5-1).
            .replace(
                r#"{ version: "24.11", spack: "24-11-6-1" }"#,
                r#"{ version: "24.11", spack: "24-11-5-1" }"#,
            )
            .replace(
                &format!("tarball_url: {}", base.publish.tarball_url),
                &format!(
                    "tarball_url: {}/{}",
                    moto.endpoint, base.publish.tarball_bucket
                ),
            );
        let path = work.path().join("catalog.yaml");
        std::fs::write(&path, &text).unwrap();
        let catalog = slurm_factory::catalog::Catalog::load(&path).unwrap();
        assert_ne!(catalog.publish.cdn_url, base.publish.cdn_url);
        Some(Rehearsal {
            work,
            moto,
            loopback: Loopback::start(),
            catalog,
            mutated: Mutex::new(None),
        })
    }

    /// The image context: the stand-in image, with the Spack-written caches it pushes and
    /// Debian's Slurm as the "built" Slurm.
    fn image_context(&self, slurm_cache: Option<&Path>) -> PathBuf {
        let ctx = self.work.path().join("image");
        let _ = std::fs::remove_dir_all(&ctx);
        std::fs::create_dir_all(ctx.join("caches/compiler")).unwrap();
        std::fs::create_dir_all(ctx.join("caches/slurm")).unwrap();
        std::fs::create_dir_all(ctx.join("slurm")).unwrap();
        let here = common::repo_root().join("tests/rehearsal/image");
        for f in ["Dockerfile", "spack"] {
            std::fs::copy(here.join(f), ctx.join(f)).unwrap();
        }
        std::fs::copy("/bin/busybox", ctx.join("busybox")).expect(
            "/bin/busybox is missing: install Debian's busybox-static (scripts/install-test-deps.sh)",
        );
        copy_tree(
            &common::repo_root().join("tests/fixtures/rehearsal/gcc-cache"),
            &ctx.join("caches/compiler"),
        );
        if let Some(c) = slurm_cache {
            copy_tree(c, &ctx.join("caches/slurm"));
        }
        // The "built" Slurm of the stand-in install: Debian's Slurm (its programs name their
        // libraries and plugins under /usr, which stay where they are on this host).
        for (dir, files) in [
            ("sbin", &["slurmctld", "slurmd", "slurmstepd"][..]),
            (
                "bin",
                &["sinfo", "srun", "sbatch", "scontrol", "squeue", "scancel"][..],
            ),
        ] {
            std::fs::create_dir_all(ctx.join("slurm").join(dir)).unwrap();
            for f in files {
                let from = std::fs::canonicalize(Path::new("/usr").join(dir).join(f));
                if let Ok(from) = from {
                    std::fs::copy(from, ctx.join("slurm").join(dir).join(f)).unwrap();
                }
            }
        }
        let plugins = Path::new("/usr/lib/x86_64-linux-gnu/slurm-wlm");
        if plugins.is_dir() {
            std::fs::create_dir_all(ctx.join("slurm/lib/slurm")).unwrap();
            copy_tree(plugins, &ctx.join("slurm/lib/slurm"));
        }
        // The image build context holds files only; keep every directory the Dockerfile copies.
        for d in ["caches/compiler", "caches/slurm", "slurm"] {
            std::fs::write(ctx.join(d).join(".keep"), "").unwrap();
        }
        ctx
    }

    /// Replays `workflow` with one edit `(from, to)` of the generated file's text: a mutation
    /// that drops or breaks one wiring. The edit must apply (else the test is wrong, not green).
    pub fn act_mutated(
        &self,
        workflow: &str,
        edit: (&str, &str),
        inputs: &[(&str, &str)],
    ) -> Outcome {
        let text =
            std::fs::read_to_string(common::repo_root().join(".github/workflows").join(workflow))
                .unwrap();
        assert_eq!(
            text.matches(edit.0).count(),
            1,
            "the mutation {:?} must match exactly once in {workflow}",
            edit.0
        );
        let dir = self.work.path().join("mutated");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(workflow), text.replace(edit.0, edit.1)).unwrap();
        *self.mutated.lock().unwrap() = Some(dir.join(workflow));
        let o = self.act(workflow, inputs, None, |_| {});
        *self.mutated.lock().unwrap() = None;
        o
    }

    /// The workflow file act runs: the generated one, or a mutated copy.
    fn workflow_file(&self, workflow: &str) -> PathBuf {
        self.mutated
            .lock()
            .unwrap()
            .clone()
            .unwrap_or_else(|| common::repo_root().join(".github/workflows").join(workflow))
    }

    /// Replays `workflow` (a file of .github/workflows) with act, dispatched with `inputs`.
    /// `secrets` are added to the signing and AWS secrets every build pipeline takes.
    pub fn act(
        &self,
        workflow: &str,
        inputs: &[(&str, &str)],
        slurm_cache: Option<&Path>,
        tweak: impl FnOnce(&mut Command),
    ) -> Outcome {
        let act = common::require_tool("act").unwrap();
        let home = self.work.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        let store = self.work.path().join("artifacts");
        let _ = std::fs::remove_dir_all(&store);
        artifact_stub(&self.work.path().join("upload"), &store, true);
        artifact_stub(&self.work.path().join("download"), &store, false);
        let bins = common::bin("slurm-factory").parent().unwrap().to_path_buf();
        let ctx = self.image_context(slurm_cache);
        let key = std::fs::read_to_string(
            common::repo_root().join("tests/fixtures/spack-v3/keys/demo-signer.sec.asc"),
        )
        .unwrap();
        let mut cmd = Command::new(act);
        cmd.current_dir(common::repo_root())
            .env("HOME", &home)
            .args(["workflow_dispatch", "-W"])
            .arg(self.workflow_file(workflow))
            .args(["-P", "ubuntu-latest=-self-hosted"])
            .args(["-P", "ubuntu-24.04=-self-hosted"])
            .args(["-P", "ubuntu-24.04-arm=-self-hosted"])
            .args(["-P", "self-hosted=-self-hosted"]);
        for (k, v) in inputs {
            cmd.arg("--input").arg(format!("{k}={v}"));
        }
        let secrets = [
            ("GPG_PRIVATE_KEY", key.as_str()),
            ("GPG_KEY_ID", &FPR[24..]),
            (
                "AWS_ROLE_ARN",
                "arn:aws:iam::123456789012:role/slurm-factory-rehearsal",
            ),
        ];
        let slack = format!("{}/slack", self.loopback.url);
        // act hands GITHUB_TOKEN to `github.token` (the report job's API token).
        let extra = [
            ("SLACK_WEBHOOK_URL", slack.as_str()),
            ("GITHUB_TOKEN", GITHUB_TOKEN),
        ];
        for (k, v) in secrets.into_iter().chain(extra) {
            cmd.arg("--secret").arg(format!("{k}={v}"));
        }
        // The repository variable a production repository sets: the plan job trusts build
        // stamps signed by this key (it never gets the key itself).
        cmd.arg("--var")
            .arg(format!("SLURM_FACTORY_SIGNING_FINGERPRINTS={FPR}"));
        let oidc = format!("{}/oidc/token", self.loopback.url);
        let api = format!("{}/api", self.loopback.url);
        let envs = [
            ("SLURM_FACTORY_BIN_DIR", bins.display().to_string()),
            (
                "SLURM_FACTORY_CATALOG",
                self.work.path().join("catalog.yaml").display().to_string(),
            ),
            ("SLURM_FACTORY_DOCKER_CONTEXT", ctx.display().to_string()),
            // The runner's caches (sources, images) live with this replay, not in act's.
            (
                "SLURM_FACTORY_CACHE_DIR",
                self.runner_cache().display().to_string(),
            ),
            ("AWS_ENDPOINT_URL", self.moto.endpoint.clone()),
            ("AWS_ENDPOINT_URL_STS", self.moto.endpoint.clone()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
            ("ACTIONS_ID_TOKEN_REQUEST_URL", oidc),
            ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", REQUEST_TOKEN.into()),
            ("GITHUB_API_URL", api),
            ("GITHUB_REPOSITORY", "vantagecompute/slurm-factory".into()),
            // A run id of its own, as GitHub gives every run: act's default is the same for
            // every replay, so two rehearsals running at once named the same build containers.
            ("GITHUB_RUN_ID", unique_run_id()),
        ];
        for (k, v) in envs {
            cmd.arg("--env").arg(format!("{k}={v}"));
        }
        for (action, dir) in [
            ("actions/upload-artifact", "upload"),
            ("actions/download-artifact", "download"),
        ] {
            cmd.arg("--local-repository").arg(format!(
                "{}={}",
                pinned(action),
                self.work.path().join(dir).display()
            ));
        }
        tweak(&mut cmd);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start act");
        // act's log, read as it is written: the GitHub stand-in answers the report job with
        // the jobs act has finished by then.
        let seen = self.loopback.seen.clone();
        {
            let mut s = seen.lock().unwrap();
            s.jobs.clear();
            s.slack.clear();
            s.oidc = 0;
        }
        let stderr = child.stderr.take().unwrap();
        let err = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = BufReader::new(stderr).read_to_string(&mut s);
            s
        });
        let mut log = String::new();
        for line in BufReader::new(child.stdout.take().unwrap()).lines() {
            let Ok(line) = line else { break };
            if let Some((job, c)) = job_end(&line) {
                seen.lock().unwrap().jobs.push((job, c));
            }
            log.push_str(&line);
            log.push('\n');
        }
        let status = child.wait().unwrap();
        log.push_str(&err.join().unwrap());
        // The whole log, for a reader of a failure (the assertions print its tail).
        let saved = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "rehearsal-{}.log",
            workflow.trim_end_matches(".yml")
        ));
        let _ = std::fs::write(&saved, &log);
        eprintln!("act's log: {}", saved.display());
        let s = seen.lock().unwrap();
        Outcome {
            success: status.success(),
            log,
            jobs: s.jobs.clone(),
            slack: s.slack.clone(),
            oidc_requests: s.oidc,
        }
    }
}

/// `[<workflow>/<job>] 🏁  Job succeeded` (or `failed`) → (job, success|failure).
fn job_end(line: &str) -> Option<(String, String)> {
    let rest = line.strip_prefix('[')?;
    let (name, tail) = rest.split_once("] ")?;
    // act pads job names to a common width.
    let job = name
        .split_once('/')
        .map_or(name, |(_, j)| j)
        .trim_end()
        .to_owned();
    if tail.contains("Job succeeded") {
        Some((job, "success".into()))
    } else if tail.contains("Job failed") {
        Some((job, "failure".into()))
    } else {
        None
    }
}
