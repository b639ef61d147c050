//! The GitHub Actions runner protocol, written to match `actions/toolkit` (`@actions/core`:
//! `command.ts`, `file-command.ts`, `oidc-utils.ts`, `core.ts`) and the runner's parsers
//! (`ActionCommand.cs`, `ActionCommandManager.cs`, `FileCommandManager.cs`).
//!
//! A [`Runner`] is built from the process environment ([`Runner::from_env`]) or from an explicit
//! set of variables ([`Runner::from_vars`], for tests). Inside Actions (`GITHUB_ACTIONS=true`) it
//! speaks the runner's protocol: `::command::` lines on stdout and heredoc records appended to the
//! `$GITHUB_OUTPUT`/`$GITHUB_ENV`/`$GITHUB_STATE` files. Outside Actions the same calls print
//! readable, coloured text on stderr, and outputs go to stdout as `key=value`.
//!
//! # Safety of what is printed
//!
//! The runner treats every stdout/stderr line that starts with `::` (after leading whitespace) or
//! contains `##[` as a workflow command. This module makes that safe by construction:
//!
//! - command messages and properties are escaped ([`escape_data`], [`escape_property`]), so a
//!   hostile value in an `::error::` cannot start a second command;
//! - [`Runner::info`] checks each line it prints; a message that would parse as a command is
//!   printed inside a `::stop-commands::` window, so it shows up verbatim and does nothing;
//! - long untrusted streams (Spack, Docker) go through [`Runner::untrusted_log`] (or
//!   [`Runner::stop_commands`] plus [`Runner::info`]): one stop window for the whole stream;
//! - a command this process issues *while* a stop window is open (an [`Runner::add_mask`] for a
//!   token fetched mid-build, say) briefly resumes processing around itself, so it is never
//!   silently ignored by the runner.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// The runner's cap on one step's job summary (`CreateStepSummaryCommand.AttachmentSizeLimit`,
/// 1 MiB). A bigger file is dropped whole by the runner, so [`Runner::append_summary`] cuts.
pub const SUMMARY_LIMIT: usize = 1024 * 1024;

/// Environment variables the runner refuses to set through `$GITHUB_ENV`.
const ENV_BLOCK_LIST: &[&str] = &["NODE_OPTIONS"];

/// The streams a [`Runner`] prints to, and whether workflow commands are currently stopped.
struct Io {
    /// stdout: commands inside Actions, `key=value` outputs outside.
    out: Box<dyn Write + Send>,
    /// Where human-readable text goes outside Actions (stderr); `None` means `out`.
    err: Option<Box<dyn Write + Send>>,
    /// The token of the open `::stop-commands::` window, if any.
    stop_token: Option<String>,
}

impl Io {
    fn write_out(&mut self, s: &str) {
        // A closed stdout must not turn into a panic in the middle of a build.
        let _ = writeln!(self.out, "{s}");
        let _ = self.out.flush();
    }

    fn write_err(&mut self, s: &str) {
        match &mut self.err {
            Some(e) => {
                let _ = writeln!(e, "{s}");
                let _ = e.flush();
            }
            None => self.write_out(s),
        }
    }
}

/// Where command lines and terminal output go.
type Sink = Arc<Mutex<Io>>;

/// A handle on the GitHub Actions runner (or on the terminal, outside Actions).
///
/// Clones share their output streams and the stop-commands state.
#[derive(Clone)]
pub struct Runner {
    vars: BTreeMap<String, String>,
    actions: bool,
    color: bool,
    io: Sink,
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

    /// The command properties, in the toolkit's order; empty strings and zeros are left out,
    /// as `command.ts` skips values JavaScript treats as false.
    fn properties(&self) -> Vec<(&'static str, String)> {
        let mut p = Vec::new();
        for (k, v) in [("title", &self.title), ("file", &self.file)] {
            if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
                p.push((k, v.to_owned()));
            }
        }
        for (k, v) in [
            ("line", self.line),
            ("endLine", self.end_line),
            ("col", self.col),
            ("endColumn", self.end_column),
        ] {
            if let Some(v) = v.filter(|v| *v != 0) {
                p.push((k, v.to_string()));
            }
        }
        p
    }
}

/// Escapes a command's message the way `command.ts` `escapeData` does: `%` first, then CR and LF.
///
/// ```
/// use slurm_factory::gha::{escape_data, format_command};
/// assert_eq!(escape_data("50%\n::set-env"), "50%25%0A::set-env");
/// // A hostile message cannot start a second command line:
/// let line = format_command("error", &[], "bad\n::add-mask::x");
/// assert_eq!(line.lines().count(), 1);
/// ```
pub fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Escapes a command property (`escapeProperty`): [`escape_data`] plus `:` and `,`.
pub fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// Reverses [`escape_data`] and [`escape_property`] (`%25` last, as the runner does).
pub fn unescape(s: &str) -> String {
    s.replace("%0D", "\r")
        .replace("%0A", "\n")
        .replace("%3A", ":")
        .replace("%2C", ",")
        .replace("%25", "%")
}

/// The runner's `ActionCommand.UnescapeData`: reverses [`escape_data`].
pub fn unescape_data(s: &str) -> String {
    s.replace("%0D", "\r")
        .replace("%0A", "\n")
        .replace("%25", "%")
}

/// The runner's `ActionCommand.UnescapeProperty`: reverses [`escape_property`].
pub fn unescape_property(s: &str) -> String {
    unescape(s)
}

/// Formats a workflow command line `::name k=v,k=v::message` (without the trailing newline).
///
/// Property values are trimmed and empty ones left out: the runner trims the property list and
/// drops empty values, so edge whitespace could not reach it anyway.
pub fn format_command(name: &str, props: &[(&str, String)], message: &str) -> String {
    let mut line = format!("::{name}");
    let props: Vec<String> = props
        .iter()
        .map(|(k, v)| (k, v.trim()))
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", escape_property(v)))
        .collect();
    if !props.is_empty() {
        line.push(' ');
        line.push_str(&props.join(","));
    }
    line.push_str("::");
    line.push_str(&escape_data(message));
    line
}

/// Whether the runner would read `line` as a workflow command: `ActionCommand.TryParseV2`
/// (`::` after leading whitespace) or the legacy `TryParse` (`##[` anywhere).
fn looks_like_command(line: &str) -> bool {
    line.trim_start().starts_with("::") || line.contains("##[")
}

/// Splits text into lines the way .NET's `ReadLine` does on the runner's side of the pipe:
/// at `\r\n`, `\n` or a lone `\r`.
fn runner_lines(text: &str) -> impl Iterator<Item = &str> {
    text.split('\n')
        .flat_map(|l| l.split('\r'))
        .filter(|l| !l.is_empty())
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

/// A fresh heredoc delimiter, `ghadelimiter_<UUID v4>` (122 random bits).
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
            self.runner.command("::endgroup::");
        }
    }
}

/// Resumes workflow-command processing when dropped (`::<token>::`).
///
/// While it is alive, lines printed by [`Runner::info`] are inert; commands issued through the
/// [`Runner`] itself still work (each briefly resumes processing around itself). Opening a
/// second window while one is open is a no-op: the outer guard owns the window.
#[must_use = "commands resume when this guard is dropped"]
pub struct StopCommands {
    runner: Runner,
    token: String,
    owner: bool,
}

impl StopCommands {
    /// The random token that resumes command processing.
    pub fn token(&self) -> &str {
        &self.token
    }
}

impl Drop for StopCommands {
    fn drop(&mut self) {
        if self.runner.actions && self.owner {
            let mut io = self.runner.lock();
            io.write_out(&format!("::{}::", self.token));
            io.stop_token = None;
        }
    }
}

/// A stream of untrusted log text (a container's output, a build log) printed verbatim inside
/// one `::stop-commands::` window. Feed it whole lines with [`UntrustedLog::line`] or raw
/// chunks with [`UntrustedLog::write_bytes`] (partial lines are held until their end arrives).
/// Dropping it flushes the last partial line and resumes command processing.
#[must_use = "the untrusted log ends when this guard is dropped"]
pub struct UntrustedLog {
    stop: StopCommands,
    partial: Vec<u8>,
}

impl UntrustedLog {
    /// Prints `text` (one or more lines) verbatim.
    pub fn line(&self, text: &str) {
        let runner = &self.stop.runner;
        let mut io = runner.lock();
        for l in text.split('\n') {
            let l = l.strip_suffix('\r').unwrap_or(l);
            // The token is unguessable; this only matters if the stream echoes our own log.
            let l = if l.contains(&self.stop.token) {
                l.replace(&self.stop.token, "***")
            } else {
                l.to_owned()
            };
            if runner.actions {
                io.write_out(&l);
            } else {
                io.write_err(&l);
            }
        }
    }

    /// Appends a raw chunk; every complete line in it is printed, the rest is kept.
    pub fn write_bytes(&mut self, chunk: &[u8]) {
        self.partial.extend_from_slice(chunk);
        if let Some(end) = self.partial.iter().rposition(|b| *b == b'\n') {
            let rest = self.partial.split_off(end + 1);
            let complete = std::mem::replace(&mut self.partial, rest);
            let text = String::from_utf8_lossy(&complete[..complete.len() - 1]).into_owned();
            self.line(&text);
        }
    }

    /// Prints what is left of a partial line and ends the window.
    pub fn finish(self) {}
}

impl Drop for UntrustedLog {
    fn drop(&mut self) {
        if !self.partial.is_empty() {
            let text = String::from_utf8_lossy(&std::mem::take(&mut self.partial)).into_owned();
            self.line(&text);
        }
    }
}

impl Runner {
    /// A runner built from the process environment, printing to stdout (and stderr outside
    /// Actions).
    pub fn from_env() -> Self {
        Self::from_vars(std::env::vars())
    }

    /// A runner built from explicit variables, printing to stdout (and stderr outside Actions).
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
            && vars.get("NO_COLOR").is_none_or(|v| v.is_empty())
            && std::io::IsTerminal::is_terminal(&std::io::stderr());
        Runner {
            vars,
            actions,
            color,
            io: Arc::new(Mutex::new(Io {
                out: Box::new(std::io::stdout()),
                err: Some(Box::new(std::io::stderr())),
                stop_token: None,
            })),
        }
    }

    /// Sends everything this runner prints, stdout and stderr alike, to `sink` (for tests).
    pub fn with_sink(mut self, sink: Box<dyn Write + Send>) -> Self {
        self.io = Arc::new(Mutex::new(Io {
            out: sink,
            err: None,
            stop_token: None,
        }));
        self.color = false;
        self
    }

    /// Whether we run inside GitHub Actions (`GITHUB_ACTIONS=true`).
    pub fn in_actions(&self) -> bool {
        self.actions
    }

    /// Whether step debug logging is on (`RUNNER_DEBUG=1`, the toolkit's `isDebug`).
    pub fn is_debug(&self) -> bool {
        self.var("RUNNER_DEBUG") == Some("1")
    }

    /// A variable of the environment this runner was built from.
    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// The link to this run (and attempt), from GITHUB_SERVER_URL, GITHUB_REPOSITORY and
    /// GITHUB_RUN_ID; `None` outside Actions.
    pub fn run_url(&self) -> Option<String> {
        let server = self
            .var("GITHUB_SERVER_URL")
            .unwrap_or("https://github.com");
        let repo = self.var("GITHUB_REPOSITORY")?;
        let id = self.var("GITHUB_RUN_ID")?;
        let mut url = format!("{}/{repo}/actions/runs/{id}", server.trim_end_matches('/'));
        if let Some(attempt) = self.var("GITHUB_RUN_ATTEMPT").filter(|a| *a != "1") {
            url.push_str(&format!("/attempts/{attempt}"));
        }
        Some(url)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Io> {
        self.io.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Issues a workflow command line (Actions only). Inside a stop-commands window the command
    /// is wrapped in a resume/stop pair so the runner still processes it.
    fn command(&self, line: &str) {
        let mut io = self.lock();
        match io.stop_token.clone() {
            Some(token) => {
                io.write_out(&format!("::{token}::"));
                io.write_out(line);
                io.write_out(&format!("::stop-commands::{token}"));
            }
            None => io.write_out(line),
        }
    }

    /// Human-readable text: a plain log line inside Actions (made inert if it would parse as a
    /// command), stderr outside.
    fn human(&self, text: &str) {
        let mut io = self.lock();
        if !self.actions {
            io.write_err(text);
            return;
        }
        if io.stop_token.is_none() && runner_lines(text).any(looks_like_command) {
            let token = uuid::Uuid::new_v4().simple().to_string();
            io.write_out(&format!("::stop-commands::{token}"));
            io.write_out(text);
            io.write_out(&format!("::{token}::"));
        } else {
            io.write_out(text);
        }
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

    /// Input `name`, trimmed; an error naming the input when it is unset or empty.
    pub fn input_required(&self, name: &str) -> Result<String> {
        self.input(name).with_context(|| {
            format!(
                "input required and not supplied: {name} (set `with: {name}:` on the step, or env {})",
                Self::input_var(name)
            )
        })
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

    /// The path of file command `var`, or `None` when the variable is unset or empty (as the
    /// toolkit treats it). A set variable whose file does not exist is an error.
    fn file_command_path(&self, var: &str) -> Result<Option<PathBuf>> {
        let Some(path) = self.var(var).filter(|p| !p.is_empty()) else {
            return Ok(None);
        };
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!(
                "${var} is set to {} but that file does not exist; the runner creates it for each step, so this step is not running where the runner expects (do not set {var} by hand)",
                path.display()
            );
        }
        Ok(Some(path))
    }

    fn append_file(&self, var: &str, text: &str) -> Result<bool> {
        let Some(path) = self.file_command_path(var)? else {
            return Ok(false);
        };
        let mut f = OpenOptions::new()
            .append(true)
            .open(&path)
            .with_context(|| format!("cannot open ${var} file {}", path.display()))?;
        // One write: an O_APPEND write of a record is not interleaved with another writer's.
        f.write_all(text.as_bytes())
            .with_context(|| format!("cannot append to ${var} file {}", path.display()))?;
        Ok(true)
    }

    fn records(kind: &str, pairs: &[(&str, &str)]) -> Result<String> {
        let mut text = String::new();
        for (key, value) in pairs {
            check_key(kind, key)?;
            text.push_str(&heredoc_record(key, value, &new_delimiter())?);
        }
        Ok(text)
    }

    /// Sets step output `key` (`$GITHUB_OUTPUT`). Outside Actions prints `key=value` to stdout.
    pub fn set_output(&self, key: &str, value: &str) -> Result<()> {
        self.set_outputs(&[(key, value)])
    }

    /// Sets several step outputs at once: every key and value is checked first, then all
    /// records are appended in one write, so either all outputs are written or none is.
    pub fn set_outputs(&self, pairs: &[(&str, &str)]) -> Result<()> {
        let text = Self::records("output", pairs)?;
        if !self.append_file("GITHUB_OUTPUT", &text)? {
            let mut io = self.lock();
            for (key, value) in pairs {
                io.write_out(&format!("{key}={value}"));
            }
        }
        Ok(())
    }

    /// Exports `key=value` to later steps (`$GITHUB_ENV`). Outside Actions it is printed.
    pub fn export_var(&self, key: &str, value: &str) -> Result<()> {
        if let Some(blocked) = ENV_BLOCK_LIST.iter().find(|b| b.eq_ignore_ascii_case(key)) {
            bail!(
                "cannot export {blocked} through $GITHUB_ENV: the runner refuses it for security reasons; pass it on the step's `env:` instead"
            );
        }
        let text = Self::records("environment variable", &[(key, value)])?;
        if !self.append_file("GITHUB_ENV", &text)? {
            self.info(&format!("export {key}={value}"));
        }
        Ok(())
    }

    /// Saves state for the action's post step (`$GITHUB_STATE`); a no-op outside Actions.
    pub fn save_state(&self, key: &str, value: &str) -> Result<()> {
        let text = Self::records("state", &[(key, value)])?;
        self.append_file("GITHUB_STATE", &text)?;
        Ok(())
    }

    /// Prepends a directory to `PATH` for later steps (`$GITHUB_PATH`, one path per line).
    /// The current process's `PATH` is not changed.
    pub fn add_path(&self, dir: &Path) -> Result<()> {
        let s = dir.to_string_lossy();
        if s.is_empty() {
            bail!("cannot add an empty directory to PATH");
        }
        if s.contains(['\n', '\r']) {
            bail!("cannot add {s:?} to PATH: it contains a line break");
        }
        if !self.append_file("GITHUB_PATH", &format!("{s}\n"))? {
            self.info(&format!("add to PATH: {s}"));
        }
        Ok(())
    }

    /// Registers a secret so the runner masks it in logs (`::add-mask::`). A multi-line secret
    /// (an armored key) is also masked line by line, because the runner masks each log line
    /// separately and the whole value never appears on one line.
    pub fn add_mask(&self, secret: &str) {
        if !self.actions || secret.trim().is_empty() {
            return;
        }
        self.command(&format_command("add-mask", &[], secret));
        if secret.contains(['\n', '\r']) {
            for part in runner_lines(secret).map(str::trim) {
                if !part.is_empty() && part != secret {
                    self.command(&format_command("add-mask", &[], part));
                }
            }
        }
    }

    /// Starts a collapsible log group; it ends when the returned guard is dropped.
    pub fn group(&self, title: &str) -> Group {
        if self.actions {
            self.command(&format_command("group", &[], title));
        } else {
            self.styled(anstyle::Style::new().bold(), &format!("▶ {title}"));
        }
        Group {
            runner: self.clone(),
        }
    }

    /// Stops workflow-command processing until the guard is dropped, for untrusted log streams
    /// printed with [`Runner::info`]. See also [`Runner::untrusted_log`].
    pub fn stop_commands(&self) -> StopCommands {
        let token = uuid::Uuid::new_v4().simple().to_string();
        let mut owner = false;
        if self.actions {
            let mut io = self.lock();
            if io.stop_token.is_none() {
                io.write_out(&format!("::stop-commands::{token}"));
                io.stop_token = Some(token.clone());
                owner = true;
            }
        }
        StopCommands {
            runner: self.clone(),
            token,
            owner,
        }
    }

    /// Opens a window for an untrusted log stream: everything fed to the returned
    /// [`UntrustedLog`] is printed verbatim and cannot issue workflow commands.
    pub fn untrusted_log(&self) -> UntrustedLog {
        UntrustedLog {
            stop: self.stop_commands(),
            partial: Vec::new(),
        }
    }

    /// Emits an annotation with properties.
    pub fn annotate(&self, level: Level, message: &str, props: &Annotation) {
        if self.actions {
            self.command(&format_command(
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
            if let Some(t) = props.title.as_deref().filter(|t| !t.is_empty()) {
                let _ = write!(text, " [{t}]");
            }
            if let Some(f) = &props.file {
                let _ = write!(text, " {f}");
                if let Some(l) = props.line {
                    let _ = write!(text, ":{l}");
                    if let Some(c) = props.col {
                        let _ = write!(text, ":{c}");
                    }
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

    /// `::debug::message` (the runner shows it when step debug logging is on); on a terminal
    /// shown only when `RUNNER_DEBUG=1`.
    pub fn debug(&self, message: &str) {
        if self.actions {
            self.command(&format_command("debug", &[], message));
        } else if self.is_debug() {
            self.styled(anstyle::Style::new().dimmed(), &format!("debug: {message}"));
        }
    }

    /// A plain log line (or several). Safe for any text: inside Actions a message that would
    /// parse as a workflow command is printed inside a stop-commands window, so it is inert.
    pub fn info(&self, message: &str) {
        self.human(message);
    }

    fn styled(&self, style: anstyle::Style, text: &str) {
        if self.color {
            self.human(&format!("{style}{text}{style:#}"));
        } else {
            self.human(text);
        }
    }

    /// Appends Markdown to the job summary (`$GITHUB_STEP_SUMMARY`), keeping the file under the
    /// runner's 1 MiB cap: text that does not fit is cut and a visible note says so. Outside
    /// Actions the Markdown is printed.
    pub fn append_summary(&self, markdown: &str) -> Result<()> {
        let Some(path) = self.file_command_path("GITHUB_STEP_SUMMARY")? else {
            self.info(markdown);
            return Ok(());
        };
        let used = std::fs::metadata(&path)
            .with_context(|| format!("cannot stat {}", path.display()))?
            .len();
        let used = usize::try_from(used).unwrap_or(usize::MAX);
        let text = fit_summary(markdown, used);
        if text.is_empty() {
            return Ok(());
        }
        self.append_file("GITHUB_STEP_SUMMARY", &text)?;
        Ok(())
    }

    /// Requests a GitHub OIDC ID token, as `oidc-utils.ts` does (GET with the request bearer,
    /// `&audience=` when given), retrying connection errors, 429 and 5xx answers with
    /// exponential back-off. The token is masked before it is returned.
    pub async fn oidc_token(&self, audience: Option<&str>) -> Result<Secret> {
        let (Some(url), Some(bearer)) = (
            self.var("ACTIONS_ID_TOKEN_REQUEST_URL")
                .filter(|v| !v.is_empty()),
            self.var("ACTIONS_ID_TOKEN_REQUEST_TOKEN")
                .filter(|v| !v.is_empty()),
        ) else {
            bail!(
                "cannot request a GitHub OIDC token: ACTIONS_ID_TOKEN_REQUEST_URL/ACTIONS_ID_TOKEN_REQUEST_TOKEN are not set. Add `permissions: id-token: write` to the job (or workflow) that runs this step; a pull request from a fork never gets OIDC tokens"
            );
        };
        let mut url = url.to_owned();
        if let Some(aud) = audience.filter(|a| !a.is_empty()) {
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str("audience=");
            url.push_str(&url_encode(aud));
        }
        self.debug(&format!("ID token url is {url}"));
        let client = crate::net::http_client(Some(Duration::from_secs(30)), None)
            .context("cannot build the HTTP client for the OIDC request")?;
        let attempts = 5;
        let mut last_err = String::new();
        for attempt in 1..=attempts {
            let resp = client
                .get(&url)
                .bearer_auth(bearer)
                .header("Accept", "application/json")
                .header("User-Agent", "actions/oidc-client (slurm-factory)")
                .send()
                .await;
            match resp {
                Ok(r) if r.status().is_success() => {
                    let body: serde_json::Value = r
                        .json()
                        .await
                        .context("the OIDC token endpoint answered with invalid JSON")?;
                    let Some(token) = body
                        .get("value")
                        .and_then(|v| v.as_str())
                        .filter(|t| !t.is_empty())
                    else {
                        bail!("the OIDC token endpoint answered without an ID token (`value`)");
                    };
                    self.add_mask(token);
                    return Ok(Secret::new(token));
                }
                Ok(r) if r.status().is_server_error() || r.status().as_u16() == 429 => {
                    last_err = format!("HTTP {}", r.status());
                }
                Ok(r) => {
                    let status = r.status();
                    let body = r.text().await.unwrap_or_default();
                    let body: String = body.chars().take(300).collect();
                    let hint = match status.as_u16() {
                        401 | 403 => {
                            "the request token was refused: check that the job has `permissions: id-token: write` and that this step runs in the job that was given it"
                        }
                        _ => "this is not a transient error, so it was not retried",
                    };
                    bail!(
                        "the OIDC token endpoint refused the request with HTTP {status}: {}; {hint}",
                        body.trim()
                    )
                }
                Err(e) => last_err = format!("{e:#}"),
            }
            if attempt < attempts {
                let backoff = Duration::from_millis(200 * (1 << (attempt - 1)));
                self.debug(&format!(
                    "OIDC token request attempt {attempt} failed ({last_err}); retrying in {backoff:?}"
                ));
                tokio::time::sleep(backoff).await;
            }
        }
        bail!("could not get a GitHub OIDC token after {attempts} attempts: {last_err}")
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

/// Returns the part of `markdown` that fits after `used` bytes, ending with a visible note when
/// cut. The cut falls at the last line break that fits, so no Markdown line is split.
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
    let cut = markdown[..cut].rfind('\n').map_or(cut, |nl| nl + 1);
    format!("{}{SUMMARY_TRUNCATED_NOTE}", &markdown[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    impl Buf {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    fn actions() -> (Runner, Buf) {
        let b = Buf::default();
        (
            Runner::from_vars([("GITHUB_ACTIONS", "true")]).with_sink(Box::new(b.clone())),
            b,
        )
    }

    #[test]
    fn commands_are_escaped() {
        assert_eq!(
            format_command(
                "error",
                &[("title", "a:b,c".into()), ("file", String::new())],
                "50%\n::set-env name=X::1"
            ),
            "::error title=a%3Ab%2Cc::50%25%0A::set-env name=X::1"
        );
    }

    #[test]
    fn info_that_looks_like_a_command_is_inert() {
        let (r, b) = actions();
        r.info("hello");
        r.info("ok\n::set-env name=A::b");
        let out = b.text();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "hello");
        let token = lines[1].strip_prefix("::stop-commands::").unwrap();
        assert_eq!(lines[4], format!("::{token}::"));
    }

    #[test]
    fn commands_inside_a_stop_window_resume_around_themselves() {
        let (r, b) = actions();
        let stop = r.stop_commands();
        let token = stop.token().to_owned();
        let nested = r.stop_commands();
        r.add_mask("s3cr3t");
        drop(nested);
        drop(stop);
        assert_eq!(
            b.text(),
            format!(
                "::stop-commands::{token}\n::{token}::\n::add-mask::s3cr3t\n::stop-commands::{token}\n::{token}::\n"
            )
        );
    }

    #[test]
    fn summary_cut_keeps_whole_lines() {
        let md = format!("line one\nline two\n{}\n", "y".repeat(300));
        let used = SUMMARY_LIMIT - SUMMARY_TRUNCATED_NOTE.len() - 20;
        let out = fit_summary(&md, used);
        assert_eq!(out, format!("line one\nline two\n{SUMMARY_TRUNCATED_NOTE}"));
        assert_eq!(out.len() + used, SUMMARY_LIMIT - 2);
    }
}
