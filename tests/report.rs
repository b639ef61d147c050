//! `slurm-factory report` against a local mock of the GitHub REST API.
//!
//! GitHub cannot be reached from the tests, so the jobs of a run are **recorded fakes**:
//! `tests/fixtures/github/*.json`, written in the shape of GitHub's documented response of
//! `GET /repos/{owner}/{repo}/actions/runs/{run_id}/jobs`, served on loopback by the small HTTP
//! server below, with pagination through the `Link` header as GitHub does it, and a failed call.
//! The client side is the real binary with octocrab; the Slack side is a loopback webhook.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, Mutex};

use slurm_factory::report::{Leg, Report, RunJob, State};

const REPO: &str = "vantagecompute/slurm-factory";
const RUN: &str = "7123456789";
const TOKEN: &str = "ghs_testtoken0123456789abcdefABCDEF";

fn fixture(name: &str) -> String {
    std::fs::read_to_string(common::repo_root().join("tests/fixtures/github").join(name)).unwrap()
}

/// One request the mock saw: request line, lower-cased headers, body.
#[derive(Debug, Clone)]
struct Seen {
    line: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

type Handler = dyn Fn(&Seen, &str) -> (u16, Vec<(String, String)>, String) + Send + Sync;

/// A loopback HTTP/1.1 server answering every request with `handler(request, base_url)`.
fn serve(handler: Arc<Handler>) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (seen2, base2) = (seen.clone(), base.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                continue;
            }
            let mut headers = Vec::new();
            let mut len = 0usize;
            loop {
                let mut h = String::new();
                r.read_line(&mut h).unwrap();
                if h == "\r\n" || h.is_empty() {
                    break;
                }
                if let Some((k, v)) = h.split_once(':') {
                    let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_owned());
                    if k == "content-length" {
                        len = v.parse().unwrap();
                    }
                    headers.push((k, v));
                }
            }
            let mut body = vec![0; len];
            r.read_exact(&mut body).unwrap();
            let req = Seen {
                line: line.trim_end().to_owned(),
                headers,
                body: String::from_utf8_lossy(&body).into_owned(),
            };
            let (status, extra, body) = handler(&req, &base2);
            seen2.lock().unwrap().push(req);
            let mut head = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n",
                body.len()
            );
            for (k, v) in extra {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            let _ = write!(s, "{head}\r\n{body}");
        }
    });
    (base, seen)
}

/// GitHub's jobs endpoint over two pages (Link: rel="next" on the first, as GitHub sends it).
fn github_api(fail_page_2: bool) -> (String, Arc<Mutex<Vec<Seen>>>) {
    serve(Arc::new(move |req: &Seen, base: &str| {
        let path = req.line.split(' ').nth(1).unwrap_or("");
        let jobs = format!("/repos/{REPO}/actions/runs/{RUN}/jobs");
        if path.starts_with(&jobs) && !path.contains("page=2") {
            let next =
                format!("{base}/repositories/77/actions/runs/{RUN}/jobs?per_page=100&page=2");
            let link = format!("<{next}>; rel=\"next\", <{next}>; rel=\"last\"");
            (
                200,
                vec![("link".into(), link)],
                fixture("jobs-page-1.json"),
            )
        } else if path.starts_with(&format!("/repositories/77/actions/runs/{RUN}/jobs")) {
            if fail_page_2 {
                (403, vec![], fixture("forbidden.json"))
            } else {
                let prev =
                    format!("{base}/repositories/77/actions/runs/{RUN}/jobs?per_page=100&page=1");
                let link = format!("<{prev}>; rel=\"prev\", <{prev}>; rel=\"first\"");
                (
                    200,
                    vec![("link".into(), link)],
                    fixture("jobs-page-2.json"),
                )
            }
        } else {
            (404, vec![], r#"{"message":"Not Found"}"#.into())
        }
    }))
}

fn slack() -> (String, Arc<Mutex<Vec<Seen>>>) {
    let (base, seen) = serve(Arc::new(|_: &Seen, _: &str| (200, vec![], "ok".into())));
    (format!("{base}/services/T0/B0/secretpart"), seen)
}

fn report(dir: &Path, api: &str, webhook: Option<&str>) -> Output {
    let mut c = common::in_actions("slurm-factory", dir);
    c.arg("report")
        .env("GITHUB_TOKEN", TOKEN)
        .env("GITHUB_API_URL", api)
        .env("GITHUB_SERVER_URL", "https://github.com")
        .env("GITHUB_REPOSITORY", REPO)
        .env("GITHUB_RUN_ID", RUN)
        .env(
            "GITHUB_WORKFLOW",
            "Build and Publish Slurm Buildcache for All Compilers",
        );
    if let Some(w) = webhook {
        c.env("SLACK_WEBHOOK_URL", w);
    }
    c.output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn job_url(id: u64) -> String {
    format!("https://github.com/{REPO}/actions/runs/{RUN}/job/{id}")
}

#[test]
fn the_report_renders_one_table_over_all_pages_and_sends_one_slack_message() {
    let (api, seen) = github_api(false);
    let (hook, posts) = slack();
    let dir = tempfile::tempdir().unwrap();
    let out = report(dir.path(), &api, Some(&hook));
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains(&format!("::add-mask::{TOKEN}")), "{t}");
    assert!(
        t.lines()
            .filter(|l| l.contains(TOKEN))
            .all(|l| l.starts_with("::add-mask::")),
        "the token is printed only to mask it: {t}"
    );

    // Both pages were read, with the token, following the Link header.
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:#?}");
    assert!(
        seen[0]
            .line
            .starts_with(&format!("GET /repos/{REPO}/actions/runs/{RUN}/jobs"))
    );
    assert!(seen[0].line.contains("per_page=100"), "{}", seen[0].line);
    assert!(seen[1].line.contains("page=2"), "{}", seen[1].line);
    for s in &seen {
        let auth = s.header("authorization").unwrap_or_default();
        assert!(auth.ends_with(TOKEN), "{auth}");
    }

    // The table: rows Slurm (newest first), columns GCC (newest first), linked cells.
    let summary = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
    let expected_rows = [
        "| Slurm \\ GCC | 14.2.0 | 13.4.0 | 11.5.0 |".to_owned(),
        "|---|---|---|---|".to_owned(),
        format!(
            "| Slurm 25.11 | [✅]({}) | [❌]({}) | [✅]({}) |",
            job_url(31000000003),
            job_url(31000000004),
            job_url(31000000005)
        ),
        format!(
            "| Slurm 24.11 | [✅]({}) | [❌]({}) | [skipped]({}) |",
            job_url(31000000006),
            job_url(31000000007),
            job_url(31000000008)
        ),
    ];
    let lines: Vec<&str> = summary.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.starts_with("| Slurm \\ GCC"))
        .unwrap_or_else(|| panic!("no table:\n{summary}"));
    assert_eq!(&lines[start..start + 4], expected_rows, "{summary}");
    assert!(
        summary.starts_with(
            "### Build and Publish Slurm Buildcache for All Compilers: 3 of 6 legs passed"
        ),
        "{summary}"
    );
    assert!(
        summary.contains("Plan the Slurm × compiler matrix [✅]"),
        "{summary}"
    );
    assert!(
        !summary.contains("Run report"),
        "the report leaves itself out: {summary}"
    );

    // Exactly one Slack message, naming the failed legs and the run.
    let posts = posts.lock().unwrap().clone();
    assert_eq!(posts.len(), 1, "{posts:#?}");
    let body: serde_json::Value = serde_json::from_str(&posts[0].body).unwrap();
    let msg = body["text"].as_str().unwrap();
    assert!(msg.starts_with(":x: *Build and Publish Slurm Buildcache for All Compilers*: 3 of 6 legs passed; failed: `Slurm 24.11 · GCC 13.4.0 · amd64`, `Slurm 25.11 · GCC 13.4.0 · amd64`"), "{msg}");
    assert!(
        msg.ends_with(&format!(
            "(<https://github.com/{REPO}/actions/runs/{RUN}|run>)"
        )),
        "{msg}"
    );
}

#[test]
fn a_failed_api_call_is_a_clear_error_and_reports_nothing() {
    let (api, seen) = github_api(true);
    let (hook, posts) = slack();
    let dir = tempfile::tempdir().unwrap();
    let out = report(dir.path(), &api, Some(&hook));
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    let cmds = common::runner_process_log(&String::from_utf8_lossy(&out.stdout));
    let err = cmds
        .iter()
        .find(|c| c.command == "error")
        .unwrap_or_else(|| panic!("no ::error:: {t}"));
    assert!(
        err.data
            .contains("cannot list the jobs of run 7123456789 of vantagecompute/slurm-factory")
            && err.data.contains("Resource not accessible by integration")
            && err.data.contains("permissions: actions: read"),
        "{}",
        err.data
    );
    assert!(
        t.lines()
            .filter(|l| l.contains(TOKEN))
            .all(|l| l.starts_with("::add-mask::"))
    );
    assert_eq!(
        seen.lock().unwrap().len(),
        2,
        "page 1, then the failing page 2"
    );
    assert!(
        std::fs::read_to_string(dir.path().join("summary.md"))
            .unwrap()
            .is_empty()
    );
    assert!(
        posts.lock().unwrap().is_empty(),
        "no message from a partial report"
    );
}

#[test]
fn the_token_goes_only_to_https_or_loopback_and_must_be_set() {
    let dir = tempfile::tempdir().unwrap();
    let out = report(dir.path(), "http://api.example.com", None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("only https:// is accepted"),
        "{}",
        text(&out)
    );

    let mut c = common::in_actions("slurm-factory", dir.path());
    let out = c
        .arg("report")
        .env("GITHUB_REPOSITORY", REPO)
        .env("GITHUB_RUN_ID", RUN)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("GITHUB_TOKEN is not set"),
        "{}",
        text(&out)
    );
}

#[test]
fn without_a_webhook_the_report_still_writes_its_table() {
    let (api, _) = github_api(false);
    let dir = tempfile::tempdir().unwrap();
    let out = report(dir.path(), &api, None);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("SLACK_WEBHOOK_URL is not set"));
    let summary = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
    assert!(summary.contains("| Slurm 25.11 |"), "{summary}");
}

/// The report reads the leg names prepare-matrix really gives the jobs.
#[test]
fn every_leg_name_prepare_matrix_writes_parses_into_its_cell() {
    for kind in ["compiler", "slurm", "tarball"] {
        let dir = tempfile::tempdir().unwrap();
        let out = common::in_actions("prepare-matrix", dir.path())
            .args(["--kind", kind])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        let m: serde_json::Value =
            serde_json::from_str(&common::runner_file_map(&dir.path().join("output"))["matrix"])
                .unwrap();
        for e in m["include"].as_array().unwrap() {
            let name = e["name"].as_str().unwrap();
            let leg = Leg::parse(name).unwrap_or_else(|| panic!("{kind}: {name:?} does not parse"));
            assert_eq!(leg.gcc, e["compiler_version"].as_str().unwrap(), "{name}");
            assert_eq!(leg.arch, e["arch"].as_str().unwrap(), "{name}");
            match e["slurm_version"].as_str() {
                Some(s) if kind == "tarball" => assert_eq!(leg.row, format!("Slurm {s} tarball")),
                Some(s) => assert_eq!(leg.row, format!("Slurm {s}")),
                None => assert_eq!(leg.row, "GCC toolchain"),
            }
        }
    }
}

#[test]
fn hostile_job_names_cannot_break_the_table() {
    let jobs = vec![
        RunJob {
            name: "Slurm 25.11 · GCC 13.4.0 · amd64".into(),
            state: State::Passed,
            html_url: "https://github.com/x) [evil](https://e".into(),
        },
        RunJob {
            name: "plan | `x` <b>\n### y".into(),
            state: State::Failed,
            html_url: "javascript:alert(1)".into(),
        },
    ];
    let md = Report::from_jobs("p|q", None, jobs, &[]).markdown();
    assert!(md.contains("### p\\|q: 1 of 1 legs passed"), "{md}");
    assert!(
        md.contains("[✅](https://github.com/x[evil]https://e)"),
        "{md}"
    );
    assert!(
        md.contains("plan \\| \\`x\\` \\<b\\> \\#\\#\\# y ❌"),
        "{md}"
    );
    assert!(!md.contains("javascript:"), "{md}");
    let _ = PathBuf::new();
}
