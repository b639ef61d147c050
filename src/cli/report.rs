//! `slurm-factory report`: one Slurm × GCC table in the job summary and one Slack message for a
//! whole pipeline run (see [`crate::report`]).

use anyhow::{Context, Result};
use clap::Parser;

use super::flag_or_input;
use crate::gha::{Runner, Secret};
use crate::report::Report;
use crate::report::github::{self, RunRef};

/// The environment variable holding the API token.
pub const TOKEN_VAR: &str = "GITHUB_TOKEN";

/// Read this run's jobs through the GitHub REST API and write one table and one Slack message.
///
/// The token comes from GITHUB_TOKEN only (the job needs `permissions: actions: read`); the
/// repository, run and API from GITHUB_REPOSITORY, GITHUB_RUN_ID and GITHUB_API_URL. The Slack
/// message goes to SLACK_WEBHOOK_URL when it is set (as `slurm-factory notify` sends it).
#[derive(Debug, Parser)]
#[command(
    name = "report",
    after_help = "Examples:\n  GITHUB_TOKEN=… GITHUB_REPOSITORY=vantagecompute/slurm-factory GITHUB_RUN_ID=123 slurm-factory report\n  slurm-factory report --pipeline 'Build and Publish Slurm' --run-id 123 --repository owner/repo"
)]
pub struct Args {
    /// Pipeline name for the title and the message (default: $GITHUB_WORKFLOW) [input: pipeline]
    #[arg(long)]
    pub pipeline: Option<String>,
    /// owner/repo (default: $GITHUB_REPOSITORY)
    #[arg(long)]
    pub repository: Option<String>,
    /// The run to report (default: $GITHUB_RUN_ID)
    #[arg(long)]
    pub run_id: Option<u64>,
}

/// The job name of the report job itself, left out of its own table.
pub const REPORT_JOB_NAME: &str = "Run report";

/// Runs `report`.
pub async fn run(args: Args, runner: Runner) -> Result<()> {
    let token = runner
        .var(TOKEN_VAR)
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(Secret::new)
        .context("GITHUB_TOKEN is not set: pass github_token: ${{ github.token }} to the report action (the job needs permissions actions: read)")?;
    runner.add_mask(token.expose());
    let repository = args
        .repository
        .or_else(|| runner.var("GITHUB_REPOSITORY").map(str::to_owned))
        .context("no repository: pass --repository owner/repo (or run inside GitHub Actions)")?;
    let run_id = match args.run_id {
        Some(id) => id,
        None => {
            let v = runner
                .var("GITHUB_RUN_ID")
                .context("no run: pass --run-id (or run inside GitHub Actions)")?;
            v.parse()
                .with_context(|| format!("GITHUB_RUN_ID {v:?} is not a run id"))?
        }
    };
    let run = RunRef {
        api_url: runner
            .var("GITHUB_API_URL")
            .filter(|u| !u.is_empty())
            .unwrap_or("https://api.github.com")
            .trim_end_matches('/')
            .to_owned(),
        repository,
        run_id,
    };
    let pipeline = flag_or_input(args.pipeline, &runner, "pipeline")
        .or_else(|| runner.var("GITHUB_WORKFLOW").map(str::to_owned))
        .unwrap_or_else(|| "slurm-factory".to_owned());
    let run_url = crate::report::slack::run_url(&runner);
    let jobs = github::run_jobs(&run, &token).await?;
    let catalog =
        crate::catalog::Catalog::load_or_embedded(super::catalog_path(None, &runner).as_deref())?;
    let report =
        Report::from_jobs(&pipeline, run_url, jobs, &[REPORT_JOB_NAME]).with_floors(&catalog);
    runner.append_summary(&report.markdown())?;
    let (passed, total) = report.passed();
    runner.info(&format!("{pipeline}: {passed} of {total} legs passed"));
    match crate::report::slack::webhook(&runner)? {
        Some(url) => {
            crate::report::slack::post_text(url, &report.slack_text()).await?;
            runner.info("posted one Slack message for the run");
        }
        None => runner.notice(&format!(
            "{} is not set: no Slack message sent for this run",
            crate::report::slack::WEBHOOK_VAR
        )),
    }
    Ok(())
}
