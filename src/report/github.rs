//! The run's jobs through the GitHub REST API, with octocrab.
//!
//! `GET {api}/repos/{owner}/{repo}/actions/runs/{run_id}/jobs?filter=latest&per_page=100`, then
//! every page the `Link: <…>; rel="next"` header names (at most [`MAX_PAGES`], so a server that
//! keeps sending `next` cannot keep the report looping). The token needs `actions: read`.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use octocrab::Octocrab;
use octocrab::models::RunId;
use octocrab::models::workflows::{Conclusion, Job, Status};

use super::{RunJob, State};
use crate::gha::Secret;

/// Most pages read (100 jobs each; a matrix has at most 256 legs).
pub(crate) const MAX_PAGES: usize = 20;

/// Which run to read, and how.
#[derive(Debug, Clone)]
pub(crate) struct RunRef {
    /// API root, e.g. `https://api.github.com` (`GITHUB_API_URL`).
    pub api_url: String,
    /// `owner/repo` (`GITHUB_REPOSITORY`).
    pub repository: String,
    /// The run id (`GITHUB_RUN_ID`).
    pub run_id: u64,
}

/// Checks the API URL: `https://`, or `http://` to a loopback address (a local mock); the token
/// is sent there, so never in clear text over a network.
pub(crate) fn validate_api_url(url: &str) -> Result<()> {
    let parsed = reqwest::Url::parse(url).map_err(|e| {
        anyhow::anyhow!(
            "GITHUB_API_URL {url:?} is not a URL ({e}): leave it unset for https://api.github.com"
        )
    })?;
    let loopback = super::is_loopback(&parsed);
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        other => bail!(
            "GITHUB_API_URL uses {other}://; only https:// is accepted (http:// only to a loopback address), so the token is never sent in clear text"
        ),
    }
}

fn conclusion(c: &Conclusion) -> &'static str {
    match c {
        Conclusion::Success => "success",
        Conclusion::Skipped => "skipped",
        Conclusion::Neutral => "neutral",
        Conclusion::Cancelled => "cancelled",
        Conclusion::TimedOut => "timed_out",
        Conclusion::ActionRequired => "action_required",
        _ => "failure",
    }
}

fn status(s: &Status) -> &'static str {
    match s {
        Status::Completed => "completed",
        Status::Failed => "completed",
        Status::InProgress => "in_progress",
        _ => "queued",
    }
}

fn run_job(j: Job) -> RunJob {
    RunJob {
        state: State::of(status(&j.status), j.conclusion.as_ref().map(conclusion)),
        html_url: j.html_url.to_string(),
        name: j.name,
    }
}

fn explain(e: octocrab::Error, what: &str) -> anyhow::Error {
    let (detail, hint) = match &e {
        octocrab::Error::GitHub { source, .. } => (
            format!(
                "the API answered HTTP {}: {}",
                source.status_code.as_u16(),
                source.message
            ),
            match source.status_code.as_u16() {
                401 => " The token was refused: pass github.token (the GITHUB_TOKEN secret).",
                403 | 404 => {
                    " Give the job `permissions: actions: read` (and check GITHUB_REPOSITORY and GITHUB_RUN_ID)."
                }
                _ => "",
            },
        ),
        other => {
            let mut msg = other.to_string();
            let mut src = std::error::Error::source(other);
            while let Some(s) = src {
                msg.push_str(": ");
                msg.push_str(&s.to_string());
                src = s.source();
            }
            (msg, "")
        }
    };
    anyhow::anyhow!("cannot list the jobs of {what}: {detail}.{hint}")
}

/// Every job of the run's latest attempt, in API order.
pub(crate) async fn run_jobs(run: &RunRef, token: &Secret) -> Result<Vec<RunJob>> {
    validate_api_url(&run.api_url)?;
    let (owner, repo) = run
        .repository
        .split_once('/')
        .filter(|(o, r)| !o.is_empty() && !r.is_empty() && !r.contains('/'))
        .with_context(|| format!("GITHUB_REPOSITORY {:?} is not owner/repo", run.repository))?;
    let client = Octocrab::builder()
        .base_uri(run.api_url.as_str())
        .context("invalid GITHUB_API_URL")?
        .personal_token(token.expose().to_owned())
        .set_connect_timeout(Some(Duration::from_secs(10)))
        .set_read_timeout(Some(Duration::from_secs(30)))
        .build()
        .context("cannot build the GitHub API client")?;
    let what = format!("run {} of {}", run.run_id, run.repository);
    let mut page = client
        .workflows(owner, repo)
        .list_jobs(RunId(run.run_id))
        .per_page(100u8)
        .send()
        .await
        .map_err(|e| explain(e, &what))?;
    let mut jobs: Vec<RunJob> = page.take_items().into_iter().map(run_job).collect();
    let mut pages = 1;
    while let Some(mut next) = client
        .get_page::<Job>(&page.next)
        .await
        .map_err(|e| explain(e, &what))?
    {
        pages += 1;
        if pages > MAX_PAGES {
            bail!("the jobs of {what} span more than {MAX_PAGES} pages; refusing to read further");
        }
        jobs.extend(next.take_items().into_iter().map(run_job));
        page = next;
    }
    Ok(jobs)
}
