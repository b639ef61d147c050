//! `slurm-factory notify`: post one Slack message about a failed pipeline leg.
//!
//! The webhook URL is a secret: it comes only from the `SLACK_WEBHOOK_URL` environment variable
//! (never a flag, so it never lands in argv or shell history), it is masked before anything is
//! printed, and errors never echo it. When the variable is unset or empty the command is a no-op
//! that says so with a `::notice::`, so workflows can call it unconditionally on failure.

use anyhow::Result;
use clap::Parser;

use super::flag_or_input;
use crate::gha::Runner;
use crate::report::slack::{Message, WEBHOOK_VAR, post, run_url, webhook};

/// Post one Slack message (pipeline, leg, run link) through an incoming webhook.
///
/// The webhook URL is read from SLACK_WEBHOOK_URL only; when it is unset this prints a notice and
/// exits 0.
#[derive(Debug, Parser)]
#[command(
    name = "notify",
    after_help = "Examples:\n  SLACK_WEBHOOK_URL=https://hooks.slack.com/services/T0/B0/XXX slurm-factory notify --leg 'slurm 25.11 / gcc 13.4.0'\n  slurm-factory notify --pipeline 'Build and Publish Slurm' --leg gcc-14.2.0 --status cancelled\n  INPUT_LEG=gcc-13.4.0 slurm-factory notify   # inside the notify action"
)]
pub struct Args {
    /// Pipeline name (default: $GITHUB_WORKFLOW) [input: pipeline]
    #[arg(long)]
    pub pipeline: Option<String>,
    /// The matrix leg or job that failed (default: $GITHUB_JOB) [input: leg]
    #[arg(long)]
    pub leg: Option<String>,
    /// What happened: failed, cancelled, ... [input: status]
    #[arg(long)]
    pub status: Option<String>,
    /// Link to the run (default: built from GITHUB_SERVER_URL, GITHUB_REPOSITORY, GITHUB_RUN_ID) [input: run_url]
    #[arg(long)]
    pub run_url: Option<String>,
}

/// The message: flags, then `INPUT_*`, then the runner's `GITHUB_*` variables.
fn message(args: &Args, runner: &Runner) -> Message {
    let pick = |flag: &Option<String>, input: &str, var: &str, default: &str| {
        flag_or_input(flag.clone(), runner, input)
            .or_else(|| runner.var(var).filter(|v| !v.is_empty()).map(str::to_owned))
            .unwrap_or_else(|| default.to_owned())
    };
    let run_url =
        flag_or_input(args.run_url.clone(), runner, "run_url").or_else(|| run_url(runner));
    Message {
        pipeline: pick(
            &args.pipeline,
            "pipeline",
            "GITHUB_WORKFLOW",
            "slurm-factory",
        ),
        leg: pick(&args.leg, "leg", "GITHUB_JOB", "unknown leg"),
        status: flag_or_input(args.status.clone(), runner, "status")
            .unwrap_or_else(|| "failed".to_owned()),
        run_url,
    }
}

/// Runs `notify`.
pub async fn run(args: Args, runner: Runner) -> Result<()> {
    let msg = message(&args, &runner);
    let Some(url) = webhook(&runner)? else {
        runner.notice(&format!(
            "{WEBHOOK_VAR} is not set: no Slack message sent for {} ({}). Add it as a repository secret to be notified of failed runs.",
            msg.pipeline, msg.leg
        ));
        return Ok(());
    };
    post(url, &msg).await?;
    runner.info(&format!(
        "posted a Slack message: {} {} ({})",
        msg.pipeline, msg.status, msg.leg
    ));
    Ok(())
}
