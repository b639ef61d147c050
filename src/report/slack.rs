//! Slack incoming webhooks: the one client that `notify` and `report` post through.
//!
//! The webhook URL is a secret: it comes only from the `SLACK_WEBHOOK_URL` environment variable
//! (never a flag, so it never lands in argv or shell history), it is masked before anything is
//! printed, and errors never echo it.

use std::time::Duration;

use anyhow::{Result, bail};

use crate::gha::{Runner, Secret};

/// The environment variable holding the Slack incoming-webhook URL.
pub(crate) const WEBHOOK_VAR: &str = "SLACK_WEBHOOK_URL";

/// The message, after defaults are applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Message {
    /// Pipeline name.
    pub pipeline: String,
    /// Leg name.
    pub leg: String,
    /// Status word.
    pub status: String,
    /// Run link, when known.
    pub run_url: Option<String>,
}

/// The link to this run (and attempt), from GITHUB_SERVER_URL, GITHUB_REPOSITORY and
/// GITHUB_RUN_ID; `None` outside Actions.
pub(crate) fn run_url(runner: &Runner) -> Option<String> {
    runner.run_url()
}

/// The webhook from SLACK_WEBHOOK_URL, masked and validated; `None` when it is unset or empty.
pub(crate) fn webhook(runner: &Runner) -> Result<Option<reqwest::Url>> {
    let Some(url) = runner
        .var(WEBHOOK_VAR)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(Secret::new)
    else {
        return Ok(None);
    };
    runner.add_mask(url.expose());
    validate_webhook(&url).map(Some)
}

/// Escapes the three characters Slack's mrkdwn treats as control characters.
pub(crate) fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

impl Message {
    /// The Slack `text` (mrkdwn): one line naming the pipeline, the leg and the run.
    pub(crate) fn text(&self) -> String {
        let mut t = format!(
            ":x: *{}* {}: `{}`",
            slack_escape(&self.pipeline),
            slack_escape(&self.status),
            slack_escape(&self.leg).replace('`', "'"),
        );
        if let Some(url) = &self.run_url {
            t.push_str(&format!(" (<{}|run log>)", slack_escape(url)));
        }
        t
    }
}

/// Checks the webhook URL: `https://`, or `http://` to a loopback address (a local relay or a
/// test server). The error never contains the URL.
pub(crate) fn validate_webhook(url: &Secret) -> Result<reqwest::Url> {
    let parsed = reqwest::Url::parse(url.expose()).map_err(|_| {
        anyhow::anyhow!("{WEBHOOK_VAR} is not a valid URL (value not shown): set it to the Slack incoming-webhook URL, https://hooks.slack.com/services/...")
    })?;
    let loopback = super::is_loopback(&parsed);
    match parsed.scheme() {
        "https" => Ok(parsed),
        "http" if loopback => Ok(parsed),
        other => bail!(
            "{WEBHOOK_VAR} uses the {other}:// scheme; only https:// is accepted (http:// only to a loopback address), so the message and the webhook's token are never sent in clear text"
        ),
    }
}

/// Posts `msg` to the webhook, retrying once on a 5xx, 429 or transport error.
pub(crate) async fn post(url: reqwest::Url, msg: &Message) -> Result<()> {
    post_text(url, &msg.text()).await
}

/// Posts one message with mrkdwn `text` to the webhook, retrying once on a 5xx, 429 or
/// transport error. Errors never contain the URL.
pub(crate) async fn post_text(url: reqwest::Url, text: &str) -> Result<()> {
    let client = crate::net::http_client(Some(Duration::from_secs(15)), None)?;
    let body = serde_json::json!({ "text": text });
    let mut last = String::new();
    for attempt in 0..2 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        match client.post(url.clone()).json(&body).send().await {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) if r.status().is_server_error() || r.status().as_u16() == 429 => {
                last = format!("HTTP {}", r.status());
            }
            Ok(r) => {
                let status = r.status();
                let text = r.text().await.unwrap_or_default();
                let text: String = text.chars().take(200).collect();
                bail!(
                    "Slack rejected the message with HTTP {status}: {text:?}. Check that {WEBHOOK_VAR} is a current incoming-webhook URL"
                );
            }
            // reqwest errors carry the URL; strip it so the webhook token never reaches a log.
            Err(e) => last = e.without_url().to_string(),
        }
    }
    bail!("could not post to Slack after 2 attempts: {last}")
}
