//! The GitHub Actions runner protocol, written to match `actions/toolkit` (`@actions/core`:
//! `command.ts`, `file-command.ts`, `oidc-utils.ts`) and the runner's `FileCommandManager.cs`.
//!
//! A [`Runner`] is built from the process environment ([`Runner::from_env`]) or from an explicit
//! set of variables ([`Runner::from_vars`], for tests). Inside Actions (`GITHUB_ACTIONS=true`) it
//! speaks the runner's protocol: `::command::` lines on stdout and heredoc records appended to the
//! `$GITHUB_OUTPUT`/`$GITHUB_ENV`/`$GITHUB_STATE` files. Outside Actions the same calls print
//! readable, coloured terminal output, and outputs go to stdout as `key=value`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// The runner's cap on one step's job summary (`SUMMARY_UPLOAD_SIZE_LIMIT` in the toolkit).
pub const SUMMARY_LIMIT: usize = 1024 * 1024;

/// Where command lines and terminal output go.
type Sink = Arc<Mutex<Box<dyn Write + Send>>>;

/// A handle on the GitHub Actions runner (or on the terminal, outside Actions).
#[derive(Clone)]
pub struct Runner {
    vars: BTreeMap<String, String>,
    actions: bool,
    color: bool,
    out: Sink,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("actions", &self.actions)
            .finish_non_exhaustive()
    }
}

/// Severity of an annotation (`::notice::`, `::warning::`, `::error::`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// `::notice::`
    Notice,
    /// `::warning::`
    Warning,
    /// `::error::`
    Error,
}

impl Level {
    fn command(self) -> &'static str {
        match self {
            Level::Notice => "notice",
            Level::Warning => "warning",
            Level::Error => "error",
        }
    }
}

/// Optional properties of an annotation, as in the toolkit's `AnnotationProperties`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Annotation {
    /// Title shown above the message.
    pub title: Option<String>,
    /// Path of the file the annotation refers to, relative to the repository root.
    pub file: Option<String>,
    /// First line of the annotated range (1-based).
    pub line: Option<u32>,
    /// Last line of the annotated range.
    pub end_line: Option<u32>,
    /// First column of the annotated range (1-based).
    pub col: Option<u32>,
    /// Last column of the annotated range.
    pub end_column: Option<u32>,
}

impl Annotation {
    /// An annotation with only a title.
    pub fn titled(title: impl Into<String>) -> Self {
        Annotation {
            title: Some(title.into()),
            ..Annotation::default()
        }
    }

    fn properties(&self) -> Vec<(&'static str, String)> {
        let mut p = Vec::new();
        if let Some(t) = &self.title {
            p.push(("title", t.clone()));
        }
        if let Some(f) = &self.file {
            p.push(("file", f.clone()));
        }
        for (k, v) in [
            ("line", self.line),
            ("endLine", self.end_line),
            ("col", self.col),
            ("endColumn", self.end_column),
        ] {
            if let Some(v) = v {
                p.push((k, v.to_string()));
            }
        }
        p
    }
}

/// Escapes a command's message the way `command.ts` `escapeData` does: `%` first, then CR and LF.
pub fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Escapes a command property (`escapeProperty`): [`escape_data`] plus `:` and `,`.
pub fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// Reverses [`escape_data`] and [`escape_property`], as the runner does when it parses a command.
pub fn unescape(s: &str) -> String {
    s.replace("%0D", "\r")
        .replace("%0A", "\n")
        .replace("%3A", ":")
        .replace("%2C", ",")
        .replace("%25", "%")
}

/// Formats a workflow command line `::name k=v,k=v::message` (without the trailing newline).
pub fn format_command(name: &str, props: &[(&str, String)], message: &str) -> String {
    let mut line = format!("::{name}");
    if !props.is_empty() {
        line.push(' ');
        let joined: Vec<String> = props
            .iter()
            .map(|(k, v)| format!("{k}={}", escape_property(v)))
            .collect();
        line.push_str(&joined.join(","));
    }
    line.push_str("::");
    line.push_str(&escape_data(message));
    line
}

/// Validates a key for `$GITHUB_OUTPUT`, `$GITHUB_ENV` or `$GITHUB_STATE`.
fn check_key(kind: &str, key: &str) -> Result<()> {
    if key.is_empty() {
        bail!("cannot write an empty {kind} name");
    }
    for bad in ["=", "<<", "\r", "\n"] {
        if key.contains(bad) {
            bail!(
                "invalid {kind} name {key:?}: it contains {bad:?}, which the runner's file-command parser would misread; use letters, digits, '-' and '_'"
            );
        }
    }
    Ok(())
}

/// Renders one heredoc record as `file-command.ts` `prepareKeyValueMessage` does, with the given
/// delimiter. Fails if the key or the value contains the delimiter.
pub fn heredoc_record(key: &str, value: &str, delimiter: &str) -> Result<String> {
    if key.contains(delimiter) {
        bail!("unexpected input: name {key:?} should not contain the delimiter {delimiter}");
    }
    if value.contains(delimiter) {
        bail!(
            "unexpected input: the value of {key:?} should not contain the delimiter {delimiter}"
        );
    }
    Ok(format!("{key}<<{delimiter}\n{value}\n{delimiter}\n"))
}

/// A fresh heredoc delimiter, `ghadelimiter_<UUID v4>`.
pub fn new_delimiter() -> String {
    format!("ghadelimiter_{}", uuid::Uuid::new_v4())
}

/// A secret string: never shown by `Debug`/`Display`. Read it with [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The secret value. Do not print it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Ends a log group when dropped (`::endgroup::`).
#[must_use = "the group ends when this guard is dropped"]
pub struct Group {
    runner: Runner,
}

impl Drop for Group {
    fn drop(&mut self) {
        if self.runner.actions {
            self.runner.line("::endgroup::");
        }
    }
}

/// Resumes workflow-command processing when dropped (`::<token>::`).
#[must_use = "commands resume when this guard is dropped"]
pub struct StopCommands {
    runner: Runner,
    token: String,
}

impl StopCommands {
    /// The random token that resumes command processing.
    pub fn token(&self) -> &str {
        &self.token
    }
}

impl Drop for StopCommands {
    fn drop(&mut self) {
        if self.runner.actions {
            self.runner.line(&format!("::{}::", self.token));
        }
    }
}

impl Runner {
    /// A runner built from the process environment, printing to stdout.
    pub fn from_env() -> Self {
        Self::from_vars(std::env::vars())
    }

    /// A runner built from explicit variables, printing to stdout.
    pub fn from_vars<I, K, V>(vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let vars: BTreeMap<String, String> = vars
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        let actions = vars.get("GITHUB_ACTIONS").is_some_and(|v| v == "true");
        let color = !actions
            && !vars.contains_key("NO_COLOR")
            && std::io::IsTerminal::is_terminal(&std::io::stdout());
        Runner {
            vars,
            actions,
            color,
            out: Arc::new(Mutex::new(Box::new(std::io::stdout()))),
        }
    }

    /// Sends everything this runner prints to `sink` instead of stdout (for tests).
    pub fn with_sink(mut self, sink: Box<dyn Write + Send>) -> Self {
        self.out = Arc::new(Mutex::new(sink));
        self.color = false;
        self
    }

    /// Whether we run inside GitHub Actions (`GITHUB_ACTIONS=true`).
    pub fn in_actions(&self) -> bool {
        self.actions
    }

    /// A variable of the environment this runner was built from.
    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    fn line(&self, s: &str) {
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        // A closed stdout must not turn into a panic in the middle of a build.
        let _ = writeln!(out, "{s}");
        let _ = out.flush();
    }

    /// The environment variable name of input `name`: `INPUT_` + upper case, spaces as `_`.
    pub fn input_var(name: &str) -> String {
        format!("INPUT_{}", name.replace(' ', "_").to_uppercase())
    }

    /// Input `name`, trimmed; `None` when unset or empty.
    pub fn input(&self, name: &str) -> Option<String> {
        self.var(&Self::input_var(name))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    }

    /// Boolean input `name`, accepting only `true|True|TRUE|false|False|FALSE`.
    pub fn input_bool(&self, name: &str) -> Result<Option<bool>> {
        match self.input(name).as_deref() {
            None => Ok(None),
            Some("true" | "True" | "TRUE") => Ok(Some(true)),
            Some("false" | "False" | "FALSE") => Ok(Some(false)),
            Some(other) => bail!(
                "input {name:?} is {other:?}, which is not a boolean: the YAML 1.2 core schema allows only true | True | TRUE | false | False | FALSE"
            ),
        }
    }

    /// Multi-line input `name`: one item per line, each trimmed, empty lines dropped.
    pub fn input_list(&self, name: &str) -> Vec<String> {
        self.var(&Self::input_var(name))
            .map(|v| {
                v.split('\n')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }

    fn append_file(&self, var: &str, text: &str) -> Result<bool> {
        let Some(path) = self.var(var) else {
            return Ok(false);
        };
        let path = PathBuf::from(path);
        if !path.exists() {
            bail!(
                "${var} is set to {} but that file does not exist; the runner creates it for each step, so this step is not running where the runner expects (do not set {var} by hand)",
                path.display()
            );
        }
        let mut f = OpenOptions::new()
            .append(true)
            .open(&path)
            .with_context(|| format!("cannot open ${var} file {}", path.display()))?;
        f.write_all(text.as_bytes())
            .with_context(|| format!("cannot append to ${var} file {}", path.display()))?;
        Ok(true)
    }

    fn key_value(&self, var: &str, kind: &str, key: &str, value: &str) -> Result<bool> {
        check_key(kind, key)?;
        let record = heredoc_record(key, value, &new_delimiter())?;
        self.append_file(var, &record)
    }

    /// Sets step output `key` (`$GITHUB_OUTPUT`). Outside Actions prints `key=value` to stdout.
    pub fn set_output(&self, key: &str, value: &str) -> Result<()> {
        if !self.key_value("GITHUB_OUTPUT", "output", key, value)? {
            self.line(&format!("{key}={value}"));
        }
        Ok(())
    }

    /// Exports `key=value` to later steps (`$GITHUB_ENV`). Outside Actions it is printed.
    pub fn export_var(&self, key: &str, value: &str) -> Result<()> {
        if !self.key_value("GITHUB_ENV", "environment variable", key, value)? {
            self.info(&format!("export {key}={value}"));
        }
        Ok(())
    }

    /// Saves state for the action's post step (`$GITHUB_STATE`).
    pub fn save_state(&self, key: &str, value: &str) -> Result<()> {
        self.key_value("GITHUB_STATE", "state", key, value)?;
        Ok(())
    }

    /// Prepends a directory to `PATH` for later steps (`$GITHUB_PATH`, one path per line).
    pub fn add_path(&self, dir: &Path) -> Result<()> {
        let s = dir.to_string_lossy();
        if s.contains(['\n', '\r']) {
            bail!("cannot add {s:?} to PATH: it contains a line break");
        }
        if !self.append_file("GITHUB_PATH", &format!("{s}\n"))? {
            self.info(&format!("add to PATH: {s}"));
        }
        Ok(())
    }

    /// Registers a secret so the runner masks it in logs (`::add-mask::`).
    pub fn add_mask(&self, secret: &str) {
        if self.actions && !secret.is_empty() {
            self.line(&format_command("add-mask", &[], secret));
        }
    }

    /// Starts a collapsible log group; it ends when the returned guard is dropped.
    pub fn group(&self, title: &str) -> Group {
        if self.actions {
            self.line(&format_command("group", &[], title));
        } else {
            self.styled(anstyle::Style::new().bold(), &format!("▶ {title}"));
        }
        Group {
            runner: self.clone(),
        }
    }

    /// Stops workflow-command processing until the guard is dropped, for untrusted log streams.
    pub fn stop_commands(&self) -> StopCommands {
        let token = uuid::Uuid::new_v4().simple().to_string();
        if self.actions {
            self.line(&format!("::stop-commands::{token}"));
        }
        StopCommands {
            runner: self.clone(),
            token,
        }
    }

    /// Emits an annotation with properties.
    pub fn annotate(&self, level: Level, message: &str, props: &Annotation) {
        if self.actions {
            self.line(&format_command(
                level.command(),
                &props.properties(),
                message,
            ));
        } else {
            let (style, label) = match level {
                Level::Notice => (anstyle::AnsiColor::Cyan.on_default(), "notice"),
                Level::Warning => (anstyle::AnsiColor::Yellow.on_default(), "warning"),
                Level::Error => (anstyle::AnsiColor::Red.on_default().bold(), "error"),
            };
            let mut text = String::from(label);
            if let Some(t) = &props.title {
                let _ = write!(text, " [{t}]");
            }
            if let Some(f) = &props.file {
                let _ = write!(text, " {f}");
                if let Some(l) = props.line {
                    let _ = write!(text, ":{l}");
                }
            }
            self.styled(style, &format!("{text}: {message}"));
        }
    }

    /// `::error::message`
    pub fn error(&self, message: &str) {
        self.annotate(Level::Error, message, &Annotation::default());
    }

    /// `::warning::message`
    pub fn warning(&self, message: &str) {
        self.annotate(Level::Warning, message, &Annotation::default());
    }

    /// `::notice::message`
    pub fn notice(&self, message: &str) {
        self.annotate(Level::Notice, message, &Annotation::default());
    }

    /// `::debug::message`; on a terminal shown only when `RUNNER_DEBUG=1`.
    pub fn debug(&self, message: &str) {
        if self.actions {
            self.line(&format_command("debug", &[], message));
        } else if self.var("RUNNER_DEBUG") == Some("1") {
            self.styled(anstyle::Style::new().dimmed(), &format!("debug: {message}"));
        }
    }

    /// A plain log line.
    pub fn info(&self, message: &str) {
        self.line(message);
    }

    fn styled(&self, style: anstyle::Style, text: &str) {
        if self.color {
            self.line(&format!("{style}{text}{style:#}"));
        } else {
            self.line(text);
        }
    }

    /// Appends Markdown to the job summary (`$GITHUB_STEP_SUMMARY`), keeping the file under the
    /// runner's 1 MiB cap: text that does not fit is cut and a visible note says so. Outside
    /// Actions the Markdown is printed.
    pub fn append_summary(&self, markdown: &str) -> Result<()> {
        let Some(path) = self.var("GITHUB_STEP_SUMMARY").map(PathBuf::from) else {
            self.line(markdown);
            return Ok(());
        };
        if !path.exists() {
            bail!(
                "$GITHUB_STEP_SUMMARY is set to {} but that file does not exist",
                path.display()
            );
        }
        let used = std::fs::metadata(&path)
            .with_context(|| format!("cannot stat {}", path.display()))?
            .len() as usize;
        let text = fit_summary(markdown, used);
        if text.is_empty() {
            return Ok(());
        }
        self.append_file("GITHUB_STEP_SUMMARY", &text)?;
        Ok(())
    }

    /// Requests a GitHub OIDC ID token, as `oidc-utils.ts` does, retrying transient failures.
    /// The token is masked before it is returned.
    pub async fn oidc_token(&self, audience: Option<&str>) -> Result<Secret> {
        let (Some(url), Some(bearer)) = (
            self.var("ACTIONS_ID_TOKEN_REQUEST_URL"),
            self.var("ACTIONS_ID_TOKEN_REQUEST_TOKEN"),
        ) else {
            bail!(
                "cannot request a GitHub OIDC token: ACTIONS_ID_TOKEN_REQUEST_URL/ACTIONS_ID_TOKEN_REQUEST_TOKEN are not set. Add `permissions: id-token: write` to the job (or workflow) that runs this step"
            );
        };
        let mut url = url.to_owned();
        if let Some(aud) = audience {
            let enc: String = url_encode(aud);
            url.push_str("&audience=");
            url.push_str(&enc);
        }
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .context("cannot build the HTTP client for the OIDC request")?;
        let attempts = 5;
        let mut last_err = None;
        for attempt in 1..=attempts {
            let resp = client
                .get(&url)
                .bearer_auth(bearer)
                .header("Accept", "application/json")
                .header("User-Agent", "slurm-factory")
                .send()
                .await;
            match resp {
                Ok(r) if r.status().is_success() => {
                    let body: serde_json::Value = r
                        .json()
                        .await
                        .context("the OIDC token endpoint answered with invalid JSON")?;
                    let Some(token) = body.get("value").and_then(|v| v.as_str()) else {
                        bail!("the OIDC token endpoint answered without a `value` field");
                    };
                    self.add_mask(token);
                    return Ok(Secret::new(token));
                }
                Ok(r) if r.status().is_server_error() || r.status().as_u16() == 429 => {
                    last_err = Some(format!("HTTP {}", r.status()));
                }
                Ok(r) => bail!(
                    "the OIDC token endpoint refused the request with HTTP {}; check that the job has `permissions: id-token: write`",
                    r.status()
                ),
                Err(e) => last_err = Some(e.to_string()),
            }
            if attempt < attempts {
                let backoff = Duration::from_millis(200 * (1 << (attempt - 1)));
                tokio::time::sleep(backoff).await;
            }
        }
        bail!(
            "could not get a GitHub OIDC token after {attempts} attempts: {}",
            last_err.unwrap_or_default()
        )
    }
}

/// Percent-encodes like JavaScript's `encodeURIComponent`.
fn url_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'-'
            | b'_'
            | b'.'
            | b'!'
            | b'~'
            | b'*'
            | b'\''
            | b'('
            | b')' => out.push(b as char),
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

/// The note appended when the job summary is cut to fit the runner's cap.
pub const SUMMARY_TRUNCATED_NOTE: &str = "\n\n> [!WARNING]\n> The rest of this summary was cut to stay under GitHub's 1 MiB job summary limit. See the step log for the full report.\n";

/// Returns the part of `markdown` that fits after `used` bytes, ending with a visible note when cut.
pub fn fit_summary(markdown: &str, used: usize) -> String {
    let room = SUMMARY_LIMIT.saturating_sub(used);
    if markdown.len() <= room {
        return markdown.to_owned();
    }
    let Some(keep) = room.checked_sub(SUMMARY_TRUNCATED_NOTE.len()) else {
        return String::new();
    };
    let mut cut = keep;
    while !markdown.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{SUMMARY_TRUNCATED_NOTE}", &markdown[..cut])
}
