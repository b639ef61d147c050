//! Helpers shared by the integration tests: locating external tools, skipping (or, under CI,
//! failing) when one is missing, and running our binaries with a scrubbed environment.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Python venv the test command installs tools into (`SLURM_FACTORY_VENV`, default `.venv`).
pub fn venv() -> PathBuf {
    std::env::var_os("SLURM_FACTORY_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv"))
}

/// Whether we run under CI (`CI` set), where a missing tool is a failure, not a skip.
pub fn under_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Finds tool `name` in the venv's `bin/` or on `PATH`.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let in_venv = venv().join("bin").join(name);
    if in_venv.is_file() {
        return Some(in_venv);
    }
    on_path(name)
}

/// Returns tool `name`, or `None` after printing why the calling test is skipped. Under CI a
/// missing tool panics instead: the test command installs every tool, so absence is a bug.
pub fn require_tool(name: &str) -> Option<PathBuf> {
    match find_tool(name) {
        Some(p) => Some(p),
        None if under_ci() => panic!(
            "required test tool `{name}` not found (venv {} or PATH); run scripts/install-test-deps.sh",
            venv().display()
        ),
        None => {
            eprintln!(
                "skipped: `{name}` is not installed (run scripts/install-test-deps.sh); under CI this fails"
            );
            None
        }
    }
}

/// Path of one of our binaries, built by Cargo for this test run.
pub fn bin(name: &str) -> PathBuf {
    assert_cmd::cargo::cargo_bin(name)
}

/// A command for one of our binaries with an environment scrubbed of everything the GitHub
/// runner or the developer's shell could leak in (`GITHUB_*`, `RUNNER_*`, `ACTIONS_*`,
/// `INPUT_*`, AWS and GPG variables), keeping only `PATH` and `HOME`.
pub fn scrubbed(name: &str) -> Command {
    let mut c = Command::new(bin(name));
    c.env_clear();
    for keep in ["PATH", "HOME", "TMPDIR", "LANG"] {
        if let Some(v) = std::env::var_os(keep) {
            c.env(keep, v);
        }
    }
    c.env("NO_COLOR", "1");
    c
}

/// A scrubbed command that believes it runs inside GitHub Actions, with fresh, empty
/// `$GITHUB_OUTPUT`, `$GITHUB_ENV` and `$GITHUB_STEP_SUMMARY` files in `dir`, and its
/// `$RUNNER_TOOL_CACHE` at `dir/tool-cache`.
pub fn in_actions(name: &str, dir: &Path) -> Command {
    let mut c = scrubbed(name);
    c.env("GITHUB_ACTIONS", "true");
    // Every runner has a tool cache; a build keeps its caches there (never in $HOME here).
    c.env("RUNNER_TOOL_CACHE", dir.join("tool-cache"));
    for (var, file) in [
        ("GITHUB_OUTPUT", "output"),
        ("GITHUB_ENV", "env"),
        ("GITHUB_STEP_SUMMARY", "summary.md"),
        ("GITHUB_STATE", "state"),
        ("GITHUB_PATH", "path"),
    ] {
        let p = dir.join(file);
        std::fs::write(&p, "").unwrap();
        c.env(var, p);
    }
    c
}

// ---------------------------------------------------------------------------------------------
// An independent model of the GitHub runner's side of the protocol, ported from actions/runner
// (`src/Runner.Worker/FileCommandManager.cs` `EnvFileKeyValuePairs` and `AddPathFileCommand`,
// `src/Runner.Common/ActionCommand.cs`, `src/Runner.Worker/ActionCommandManager.cs`) for Linux
// (`OS_WINDOWS` undefined). It shares no code with `slurm_factory::gha`: tests write with the
// library and read back with this, as the real runner would.
// ---------------------------------------------------------------------------------------------

/// `EnvFileKeyValuePairs.ReadLine`: the next line of `text` from `index` and the newline that
/// ended it (`None` at the end of the text or for a last line without a newline).
fn runner_read_line<'a>(
    text: &'a str,
    index: &mut usize,
) -> (Option<&'a str>, Option<&'static str>) {
    if *index >= text.len() {
        return (None, None);
    }
    let original = *index;
    match text[original..].find('\n') {
        None => {
            *index = text.len();
            (Some(&text[original..]), None)
        }
        Some(rel) => {
            let lf = original + rel;
            *index = lf + 1;
            (Some(&text[original..lf]), Some("\n"))
        }
    }
}

/// Parses a `$GITHUB_OUTPUT`/`$GITHUB_ENV`/`$GITHUB_STATE` file exactly as the runner's
/// `EnvFileKeyValuePairs` does (both `NAME=VALUE` and `NAME<<DELIMITER` forms). Errors carry the
/// runner's messages.
pub fn runner_file_pairs(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    let mut index = 0;
    let mut line = runner_read_line(text, &mut index).0;
    while let Some(l) = line {
        if !l.is_empty() {
            let equals = l.find('=').map_or(-1, |i| i as isize);
            let heredoc = l.find("<<").map_or(-1, |i| i as isize);
            let (key, output);
            if equals >= 0 && (heredoc < 0 || equals < heredoc) {
                // Normal style NAME=VALUE (the runner's empty-name check tests the whole line,
                // which is never empty here, so an empty name passes; ported as is).
                let (k, v) = l.split_once('=').unwrap();
                key = k.to_owned();
                output = v.to_owned();
            } else if heredoc >= 0 && (equals < 0 || heredoc < equals) {
                let (k, delimiter) = l.split_once("<<").unwrap();
                if k.is_empty() || delimiter.is_empty() {
                    return Err(format!(
                        "Invalid format '{l}'. Name must not be empty and delimiter must not be empty"
                    ));
                }
                key = k.to_owned();
                let start = index;
                let mut end = index;
                let (mut temp, mut newline) = runner_read_line(text, &mut index);
                while temp != Some(delimiter) {
                    if temp.is_none() {
                        return Err(format!(
                            "Invalid value. Matching delimiter not found '{delimiter}'"
                        ));
                    }
                    let Some(nl) = newline else {
                        return Err("Invalid value. EOF marker missing new line.".into());
                    };
                    end = index - nl.len();
                    (temp, newline) = runner_read_line(text, &mut index);
                }
                output = if end > start {
                    text[start..end].to_owned()
                } else {
                    String::new()
                };
            } else {
                return Err(format!("Invalid format '{l}'"));
            }
            pairs.push((key, output));
        }
        line = runner_read_line(text, &mut index).0;
    }
    Ok(pairs)
}

/// [`runner_file_pairs`] of a file, as a map (later records win, as in the runner).
pub fn runner_file_map(path: &Path) -> std::collections::BTreeMap<String, String> {
    let text = std::fs::read_to_string(path).unwrap();
    runner_file_pairs(&text)
        .unwrap_or_else(|e| panic!("the runner would reject {}: {e}\n{text}", path.display()))
        .into_iter()
        .collect()
}

/// .NET `ReadLine` / `File.ReadAllLines` line splitting: `\r\n`, `\n` or a lone `\r`.
pub fn dotnet_lines(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        match rest.find(['\r', '\n']) {
            None => {
                out.push(rest);
                break;
            }
            Some(i) => {
                out.push(&rest[..i]);
                let skip = if rest[i..].starts_with("\r\n") { 2 } else { 1 };
                rest = &rest[i + skip..];
            }
        }
    }
    out
}

/// `AddPathFileCommand`: the directories of a `$GITHUB_PATH` file, empty lines skipped.
pub fn runner_path_lines(text: &str) -> Vec<String> {
    dotnet_lines(text)
        .into_iter()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A workflow command as the runner's `ActionCommand` holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionCommand {
    /// The command name.
    pub command: String,
    /// Properties (names compared case-insensitively by the runner; kept as written here).
    pub properties: std::collections::BTreeMap<String, String>,
    /// The unescaped message.
    pub data: String,
}

fn runner_unescape(s: &str, mappings: &[(&str, &str)]) -> String {
    let mut out = s.to_owned();
    for (token, replacement) in mappings {
        out = out.replace(replacement, token);
    }
    out
}

/// `ActionCommand.UnescapeData`.
pub fn runner_unescape_data(s: &str) -> String {
    runner_unescape(s, &[("\r", "%0D"), ("\n", "%0A"), ("%", "%25")])
}

/// `ActionCommand.UnescapeProperty`.
pub fn runner_unescape_property(s: &str) -> String {
    runner_unescape(
        s,
        &[
            ("\r", "%0D"),
            ("\n", "%0A"),
            (":", "%3A"),
            (",", "%2C"),
            ("%", "%25"),
        ],
    )
}

/// Commands the runner registers (`ActionCommandManager` and its extensions).
pub const REGISTERED_COMMANDS: &[&str] = &[
    "stop-commands",
    "set-env",
    "set-output",
    "save-state",
    "add-mask",
    "add-path",
    "add-matcher",
    "remove-matcher",
    "warning",
    "error",
    "notice",
    "debug",
    "group",
    "endgroup",
    "echo",
];

fn registered(name: &str, extra: &[String]) -> bool {
    REGISTERED_COMMANDS
        .iter()
        .any(|c| c.eq_ignore_ascii_case(name))
        || extra.iter().any(|c| c.eq_ignore_ascii_case(name))
}

/// `ActionCommand.TryParseV2` (`::name k=v,k=v::data`) then the legacy `TryParse`
/// (`##[name k=v;k=v]data`, anywhere in the line).
pub fn runner_parse_command(line: &str, extra: &[String]) -> Option<ActionCommand> {
    let msg = line.trim_start();
    if let Some(rest) = msg.strip_prefix("::")
        && let Some(end) = rest.find("::")
    {
        let info = &rest[..end];
        let (name, props) = match info.find(' ') {
            Some(i) => (&info[..i], Some(info[i + 1..].trim())),
            None => (info, None),
        };
        if registered(name, extra) {
            let mut properties = std::collections::BTreeMap::new();
            if let Some(props) = props.filter(|_| info.find(' ') > Some(0)) {
                for p in props.split(',').filter(|p| !p.is_empty()) {
                    let pair: Vec<&str> = p.splitn(2, '=').filter(|s| !s.is_empty()).collect();
                    if pair.len() == 2 {
                        properties.insert(pair[0].to_owned(), runner_unescape_property(pair[1]));
                    }
                }
            }
            return Some(ActionCommand {
                command: name.to_owned(),
                properties,
                data: runner_unescape_data(&rest[end + 2..]),
            });
        }
    }
    let start = line.find("##[")?;
    let rb = start + line[start..].find(']')?;
    let info = &line[start + 3..rb];
    let name = info.split(' ').next().unwrap_or_default();
    if !registered(name, extra) {
        return None;
    }
    let legacy = [
        (";", "%3B"),
        ("\r", "%0D"),
        ("\n", "%0A"),
        ("]", "%5D"),
        ("%", "%25"),
    ];
    Some(ActionCommand {
        command: name.to_owned(),
        properties: Default::default(),
        data: runner_unescape(&line[rb + 1..], &legacy),
    })
}

/// What the runner does with a step's output: the commands it processes, in order, honouring
/// `::stop-commands::TOKEN` ... `::TOKEN::` windows (`ActionCommandManager.TryProcessCommand`).
/// Stop and resume commands themselves are not returned.
pub fn runner_process_log(log: &str) -> Vec<ActionCommand> {
    let mut out = Vec::new();
    let mut stop_token: Option<String> = None;
    let mut extra: Vec<String> = Vec::new();
    for line in dotnet_lines(log) {
        let Some(cmd) = runner_parse_command(line, &extra) else {
            continue;
        };
        match &stop_token {
            Some(token) => {
                if cmd.command.eq_ignore_ascii_case(token) {
                    extra.retain(|t| t != token);
                    stop_token = None;
                }
            }
            None => {
                if cmd.command.eq_ignore_ascii_case("stop-commands") {
                    stop_token = Some(cmd.data.clone());
                    extra.push(cmd.data.clone());
                } else {
                    out.push(cmd);
                }
            }
        }
    }
    out
}

/// `python3 -m http.server` bound to loopback, serving `dir` (a real web server that cannot
/// list buckets); killed when dropped.
pub struct HttpServer {
    child: std::process::Child,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
}

impl HttpServer {
    /// Starts the server, or returns `None` after printing why the test is skipped (no
    /// python3; under CI that panics, see [`require_tool`]).
    pub fn start(dir: &Path) -> Option<HttpServer> {
        use std::process::Stdio;
        use std::time::{Duration, Instant};
        let python = require_tool("python3")?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(python)
            .args(["-m", "http.server", "--bind", "127.0.0.1"])
            .arg(port.to_string())
            .arg("--directory")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start python3 -m http.server");
        let t0 = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "http.server did not listen"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(HttpServer {
            child,
            url: format!("http://127.0.0.1:{port}"),
        })
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Asserts that the shell script at `path` is POSIX `sh`: `shellcheck --shell=sh` finds
/// nothing (style included), and dash (Debian's /bin/sh, no bash extensions) parses it.
#[allow(dead_code)]
pub fn assert_posix_sh(path: &std::path::Path) {
    if let Some(shellcheck) = require_tool("shellcheck") {
        let out = std::process::Command::new(shellcheck)
            .args(["--shell=sh", "--severity=style"])
            .arg(path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "shellcheck {}:\n{}",
            path.display(),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    if let Some(dash) = find_tool("dash") {
        let st = std::process::Command::new(dash)
            .arg("-n")
            .arg(path)
            .status()
            .unwrap();
        assert!(st.success(), "dash -n {} failed", path.display());
    }
}

/// The real Spack 1.0.0 that `scripts/setup-spack` unpacked from the vendored archives (offline).
#[derive(Debug, Clone)]
pub struct RealSpack {
    /// `SPACK_ROOT` (`bin/spack` inside).
    pub root: PathBuf,
    /// The builtin repository of the pinned spack-packages (`.../repos/spack_repo/builtin`).
    pub builtin: PathBuf,
    /// A Python with clingo importable, for `SPACK_PYTHON`.
    pub python: PathBuf,
    /// The vendor directory with the Slurm release tarballs (`slurm-22-05-8-1.tar.gz`, ...).
    pub vendor: PathBuf,
}

impl RealSpack {
    /// `spack` itself.
    pub fn exe(&self) -> PathBuf {
        self.root.join("bin/spack")
    }

    /// A `spack` command isolated from the machine's and the user's configuration: its own
    /// `HOME`, `SPACK_USER_CONFIG_PATH` and `SPACK_USER_CACHE_PATH` under `home`, the clingo
    /// Python, no network proxies.
    pub fn command(&self, home: &Path) -> Command {
        let mut c = Command::new(self.exe());
        c.env("SPACK_PYTHON", &self.python)
            .env("HOME", home)
            .env("SPACK_USER_CONFIG_PATH", home.join(".spack"))
            .env("SPACK_USER_CACHE_PATH", home.join(".spack-cache"))
            .env("SPACK_DISABLE_LOCAL_CONFIG", "1")
            .env_remove("SPACK_ROOT")
            .stdin(std::process::Stdio::null());
        c
    }
}

/// The vendored real Spack (run `scripts/setup-spack`), or `None` after saying why the calling
/// test is skipped. Under CI its absence panics: the test command sets it up.
pub fn real_spack() -> Option<RealSpack> {
    let dot = repo_root().join(".spack");
    let root = dot.join("spack-1.0.0");
    let builtin = dot.join("spack-packages-v2025.07.0/repos/spack_repo/builtin");
    let python = venv().join("bin/python");
    let vendor = std::env::var_os("SLURM_FACTORY_VENDOR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared/vendor"));
    let clingo = root.join("bin/spack").is_file()
        && builtin.is_dir()
        && Command::new(&python)
            .args(["-c", "import clingo"])
            .output()
            .is_ok_and(|o| o.status.success());
    if clingo {
        return Some(RealSpack {
            root,
            builtin,
            python,
            vendor,
        });
    }
    if under_ci() {
        panic!("the vendored real Spack is not set up under .spack/ (run scripts/setup-spack)");
    }
    eprintln!(
        "skipped: the vendored real Spack is not set up (run scripts/setup-spack); under CI this fails"
    );
    None
}
