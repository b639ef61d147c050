//! The runner protocol (`slurm_factory::gha`) checked against an independent port of the GitHub
//! runner's own parsers (`tests/common/mod.rs`): what we write must read back exactly as the
//! runner would read it. OIDC is tested against a real HTTP/1.1 server on loopback (GitHub's
//! token service itself cannot run here; this server plays it and checks bearer and audience).

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use common::{
    runner_file_map, runner_file_pairs, runner_parse_command, runner_path_lines,
    runner_process_log, runner_unescape_data, runner_unescape_property,
};
use proptest::prelude::*;
use slurm_factory::gha::{
    self, Annotation, Level, Runner, SUMMARY_LIMIT, SUMMARY_TRUNCATED_NOTE, escape_data,
    escape_property, format_command, heredoc_record,
};

/// A clonable in-memory sink for [`Runner::with_sink`].
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

/// A runner inside "Actions" whose file commands live in `dir`.
fn actions_runner(dir: &Path, extra: &[(&str, &str)]) -> (Runner, Captured) {
    let mut vars: Vec<(String, String)> = vec![("GITHUB_ACTIONS".into(), "true".into())];
    for (var, file) in [
        ("GITHUB_OUTPUT", "output"),
        ("GITHUB_ENV", "env"),
        ("GITHUB_STATE", "state"),
        ("GITHUB_PATH", "path"),
        ("GITHUB_STEP_SUMMARY", "summary.md"),
    ] {
        let p = dir.join(file);
        std::fs::write(&p, "").unwrap();
        vars.push((var.into(), p.to_string_lossy().into_owned()));
    }
    vars.extend(extra.iter().map(|(k, v)| ((*k).into(), (*v).into())));
    let cap = Captured::default();
    (
        Runner::from_vars(vars).with_sink(Box::new(cap.clone())),
        cap,
    )
}

/// Values that break naive writers: every one must survive the runner's parser unchanged.
fn tricky_values() -> Vec<String> {
    vec![
        String::new(),
        "plain".into(),
        "a=b=c".into(),
        "x<<EOF".into(),
        "<<".into(),
        "100% done %0A %25".into(),
        "::set-output name=evil::1".into(),
        "line one\nline two\n".into(),
        "\n".into(),
        "\n\n".into(),
        "windows\r\nline\r\n".into(),
        "ends with cr\r".into(),
        "lone\rcarriage".into(),
        "EOF\nEOF".into(),
        "before\nghadelimiter_00000000-0000-4000-8000-000000000000\nafter".into(),
        "ghadelimiter_".into(),
        "key<<ghadelimiter_1234\nvalue\nghadelimiter_1234".into(),
        "ünïcødé · ✓ 🚀".into(),
        "{\"include\":[{\"name\":\"Slurm 25.11 · GCC 13.4.0\"}]}".into(),
        " leading and trailing spaces ".into(),
    ]
}

#[test]
fn outputs_env_and_state_round_trip_through_the_runner_parser() {
    let dir = tempfile::tempdir().unwrap();
    let (runner, _) = actions_runner(dir.path(), &[]);
    let values = tricky_values();
    for (i, v) in values.iter().enumerate() {
        runner.set_output(&format!("out_{i}"), v).unwrap();
        runner.export_var(&format!("ENV_{i}"), v).unwrap();
        runner.save_state(&format!("state-{i}"), v).unwrap();
    }
    for (file, prefix) in [("output", "out_"), ("env", "ENV_"), ("state", "state-")] {
        let text = std::fs::read_to_string(dir.path().join(file)).unwrap();
        let pairs = runner_file_pairs(&text).unwrap();
        assert_eq!(pairs.len(), values.len(), "{file}: {text}");
        for (i, (k, v)) in pairs.iter().enumerate() {
            assert_eq!(k, &format!("{prefix}{i}"));
            assert_eq!(v, &values[i], "{file} record {i} changed");
        }
        // Every record uses its own fresh ghadelimiter_<uuid v4>.
        let delimiters: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.split_once("<<ghadelimiter_").map(|(_, d)| d))
            .collect();
        assert_eq!(delimiters.len(), values.len());
        for d in &delimiters {
            let uuid = uuid::Uuid::parse_str(d).unwrap();
            assert_eq!(uuid.get_version_num(), 4);
        }
        let unique: std::collections::HashSet<_> = delimiters.iter().collect();
        assert_eq!(unique.len(), delimiters.len());
    }
}

#[test]
fn set_outputs_writes_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (runner, _) = actions_runner(dir.path(), &[]);
    let err = runner
        .set_outputs(&[("good", "1"), ("bad=key", "2")])
        .unwrap_err();
    assert!(err.to_string().contains("bad=key"), "{err}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("output")).unwrap(),
        ""
    );
    runner.set_outputs(&[("a", "1"), ("b", "x\ny")]).unwrap();
    let map = runner_file_map(&dir.path().join("output"));
    assert_eq!(
        map,
        BTreeMap::from([("a".into(), "1".into()), ("b".into(), "x\ny".into())])
    );
}

#[test]
fn keys_the_runner_would_misread_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (runner, _) = actions_runner(dir.path(), &[]);
    for key in ["", "a=b", "a<<b", "a\nb", "a\rb", "=", "<<"] {
        assert!(
            runner.set_output(key, "v").is_err(),
            "output key {key:?} accepted"
        );
        assert!(
            runner.export_var(key, "v").is_err(),
            "env key {key:?} accepted"
        );
        assert!(
            runner.save_state(key, "v").is_err(),
            "state key {key:?} accepted"
        );
    }
    for file in ["output", "env", "state"] {
        assert_eq!(std::fs::read_to_string(dir.path().join(file)).unwrap(), "");
    }
    let err = runner
        .export_var("node_options", "--require x")
        .unwrap_err();
    assert!(err.to_string().contains("NODE_OPTIONS"), "{err}");
}

#[test]
fn a_value_containing_the_delimiter_is_refused() {
    let d = "ghadelimiter_11111111-2222-4333-8444-555555555555";
    assert!(heredoc_record("k", &format!("x\n{d}\ny"), d).is_err());
    assert!(heredoc_record("k", &format!("x{d}"), d).is_err());
    assert!(heredoc_record(&format!("k{d}"), "v", d).is_err());
    let ok = heredoc_record("k", "x\nghadelimiter_other\ny", d).unwrap();
    assert_eq!(
        runner_file_pairs(&ok).unwrap(),
        [("k".to_owned(), "x\nghadelimiter_other\ny".to_owned())]
    );
}

#[test]
fn a_set_variable_whose_file_is_missing_is_an_error_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    for var in [
        "GITHUB_OUTPUT",
        "GITHUB_ENV",
        "GITHUB_STATE",
        "GITHUB_PATH",
        "GITHUB_STEP_SUMMARY",
    ] {
        let runner =
            Runner::from_vars([("GITHUB_ACTIONS", "true"), (var, missing.to_str().unwrap())])
                .with_sink(Box::new(Captured::default()));
        let err = match var {
            "GITHUB_OUTPUT" => runner.set_output("k", "v"),
            "GITHUB_ENV" => runner.export_var("K", "v"),
            "GITHUB_STATE" => runner.save_state("k", "v"),
            "GITHUB_PATH" => runner.add_path(Path::new("/opt/bin")),
            _ => runner.append_summary("# hi"),
        }
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(var) && msg.contains("does not exist"), "{msg}");
        assert!(!missing.exists(), "{var} created the file");
    }
}

#[test]
fn outside_actions_outputs_go_to_stdout_as_key_value() {
    let cap = Captured::default();
    let runner = Runner::from_vars([("GITHUB_OUTPUT", "")]).with_sink(Box::new(cap.clone()));
    assert!(!runner.in_actions());
    runner.set_output("count", "32").unwrap();
    runner.set_outputs(&[("a", "1"), ("b", "2")]).unwrap();
    runner.error("bad thing");
    runner.debug("hidden");
    runner.add_mask("secret");
    assert_eq!(cap.text(), "count=32\na=1\nb=2\nerror: bad thing\n");

    let cap = Captured::default();
    let runner = Runner::from_vars([("RUNNER_DEBUG", "1")]).with_sink(Box::new(cap.clone()));
    runner.debug("shown");
    assert_eq!(cap.text(), "debug: shown\n");
}

#[test]
fn github_path_is_one_directory_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let (runner, _) = actions_runner(dir.path(), &[]);
    runner.add_path(Path::new("/opt/slurm/bin")).unwrap();
    runner.add_path(Path::new("/opt/with space/bin")).unwrap();
    assert!(runner.add_path(Path::new("/opt/evil\n/tmp")).is_err());
    assert!(runner.add_path(Path::new("/opt/evil\r/tmp")).is_err());
    assert!(runner.add_path(Path::new("")).is_err());
    let text = std::fs::read_to_string(dir.path().join("path")).unwrap();
    assert_eq!(
        runner_path_lines(&text),
        ["/opt/slurm/bin", "/opt/with space/bin"]
    );
}

#[test]
fn inputs_follow_the_toolkit() {
    assert_eq!(
        Runner::input_var("compiler versions"),
        "INPUT_COMPILER_VERSIONS"
    );
    assert_eq!(Runner::input_var("slurm-version"), "INPUT_SLURM-VERSION");
    let mut vars = vec![
        ("INPUT_COMPILER_VERSIONS", "  13.4.0 \n"),
        ("INPUT_BLANK", "   "),
        ("INPUT_LIST", "a\n\n  b  \r\n\n c"),
    ];
    let good = ["true", "True", "TRUE", "false", "False", "FALSE"];
    let bad = ["yes", "1", "tRUE", "on", "y", "false!"];
    let names: Vec<String> = (0..good.len() + bad.len())
        .map(|i| format!("INPUT_B{i}"))
        .collect();
    for (i, v) in good.iter().chain(bad.iter()).enumerate() {
        vars.push((names[i].as_str(), v));
    }
    let runner = Runner::from_vars(vars);
    assert_eq!(runner.input("compiler versions").as_deref(), Some("13.4.0"));
    assert_eq!(runner.input("blank"), None);
    assert_eq!(runner.input("unset"), None);
    assert!(
        runner
            .input_required("unset")
            .unwrap_err()
            .to_string()
            .contains("INPUT_UNSET")
    );
    assert_eq!(runner.input_list("list"), ["a", "b", "c"]);
    assert!(runner.input_list("unset").is_empty());
    for (i, v) in good.iter().enumerate() {
        let want = v.eq_ignore_ascii_case("true");
        assert_eq!(
            runner.input_bool(&format!("b{i}")).unwrap(),
            Some(want),
            "{v}"
        );
    }
    for (i, v) in bad.iter().enumerate() {
        let err = runner
            .input_bool(&format!("b{}", good.len() + i))
            .unwrap_err();
        assert!(err.to_string().contains("true | True | TRUE"), "{v}: {err}");
    }
    assert_eq!(runner.input_bool("unset").unwrap(), None);
}

#[test]
fn annotations_carry_every_property_and_cannot_be_forged() {
    let dir = tempfile::tempdir().unwrap();
    let (runner, cap) = actions_runner(dir.path(), &[]);
    let props = Annotation {
        title: Some("bad: input, really".into()),
        file: Some("workflows/a,line=9.yml".into()),
        line: Some(3),
        end_line: Some(4),
        col: Some(5),
        end_column: Some(6),
    };
    let message =
        "13.4.0; rm -rf /\n::set-env name=LD_PRELOAD::/tmp/x.so\r\n##[set-output name=a]b %0A";
    runner.annotate(Level::Warning, message, &props);
    runner.error(message);
    runner.notice("n");
    let log = cap.text();
    assert_eq!(log.lines().count(), 3, "{log}");
    let cmds = runner_process_log(&log);
    assert_eq!(cmds.len(), 3);
    assert_eq!(cmds[0].command, "warning");
    assert_eq!(cmds[0].data, message);
    let want: BTreeMap<String, String> = [
        ("title", "bad: input, really"),
        ("file", "workflows/a,line=9.yml"),
        ("line", "3"),
        ("endLine", "4"),
        ("col", "5"),
        ("endColumn", "6"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(cmds[0].properties, want);
    assert_eq!(cmds[1].command, "error");
    assert_eq!(cmds[1].data, message);
    assert!(cmds[1].properties.is_empty());
    assert_eq!(cmds[2].command, "notice");
}

#[test]
fn info_text_that_looks_like_commands_is_inert() {
    let dir = tempfile::tempdir().unwrap();
    let (runner, cap) = actions_runner(dir.path(), &[]);
    runner.info("plain line");
    runner.info("ok\n  ::set-env name=A::b\rmore ##[error]forged");
    runner.info("::add-mask::not-really");
    runner.warning("real");
    let log = cap.text();
    assert!(
        log.contains("  ::set-env name=A::b\rmore ##[error]forged\n"),
        "{log}"
    );
    let cmds = runner_process_log(&log);
    assert_eq!(cmds.len(), 1, "{cmds:?}");
    assert_eq!(cmds[0].command, "warning");
}

#[test]
fn debug_goes_to_the_runner_and_groups_close_on_drop() {
    let dir = tempfile::tempdir().unwrap();
    let (runner, cap) = actions_runner(dir.path(), &[]);
    {
        let _g = runner.group("Build: GCC 13.4.0, amd64");
        runner.debug("50% done\nnext");
    }
    let cmds = runner_process_log(&cap.text());
    let names: Vec<&str> = cmds.iter().map(|c| c.command.as_str()).collect();
    assert_eq!(names, ["group", "debug", "endgroup"]);
    assert_eq!(cmds[0].data, "Build: GCC 13.4.0, amd64");
    assert_eq!(cmds[1].data, "50% done\nnext");
}

#[test]
fn an_untrusted_log_cannot_issue_commands_but_our_masks_still_work() {
    let dir = tempfile::tempdir().unwrap();
    let (runner, cap) = actions_runner(dir.path(), &[]);
    let hostile = "building...\n::set-output name=matrix::{}\n  ::error::forged\r::warning::cr split\n##[add-mask]x\n::stop-commands::other\n::other::\n::endgroup::\npartial";
    {
        let mut log = runner.untrusted_log();
        // Arbitrary chunk boundaries, as a container's output arrives.
        for chunk in hostile.as_bytes().chunks(7) {
            log.write_bytes(chunk);
        }
        runner.add_mask("fetched-mid-build-token");
        log.line("::error::after the mask");
        runner.info("::notice::from our own info while stopped");
    }
    runner.notice("resumed");
    let text = cap.text();
    for line in [
        "::set-output name=matrix::{}",
        "  ::error::forged",
        "partial",
    ] {
        assert!(text.contains(line), "{line:?} not shown verbatim:\n{text}");
    }
    let cmds = runner_process_log(&text);
    let got: Vec<(&str, &str)> = cmds
        .iter()
        .map(|c| (c.command.as_str(), c.data.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("add-mask", "fetched-mid-build-token"),
            ("notice", "resumed")
        ],
        "{text}"
    );
}

#[test]
fn multi_line_secrets_are_masked_line_by_line() {
    let dir = tempfile::tempdir().unwrap();
    let (runner, cap) = actions_runner(dir.path(), &[]);
    let key = "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nlQdGBGX...\r\n=abcd\n-----END PGP PRIVATE KEY BLOCK-----\n";
    runner.add_mask(key);
    runner.add_mask("   ");
    let masks: Vec<String> = runner_process_log(&cap.text())
        .into_iter()
        .map(|c| {
            assert_eq!(c.command, "add-mask");
            c.data
        })
        .collect();
    assert_eq!(masks[0], key);
    for line in [
        "-----BEGIN PGP PRIVATE KEY BLOCK-----",
        "lQdGBGX...",
        "=abcd",
    ] {
        assert!(
            masks.iter().any(|m| m == line),
            "{line} not masked: {masks:?}"
        );
    }
    assert!(!masks.iter().any(|m| m.trim().is_empty()));
}

#[test]
fn the_summary_stays_under_the_runner_cap_with_a_visible_note() {
    let dir = tempfile::tempdir().unwrap();
    let (runner, _) = actions_runner(dir.path(), &[]);
    let summary = dir.path().join("summary.md");
    runner.append_summary("# Report\n\n").unwrap();
    let row = "| Slurm 25.11 · GCC 13.4.0 · amd64 | ok |\n";
    let big = row.repeat(SUMMARY_LIMIT / row.len() + 100);
    runner.append_summary(&big).unwrap();
    let text = std::fs::read_to_string(&summary).unwrap();
    assert!(text.len() <= SUMMARY_LIMIT, "{} bytes", text.len());
    assert!(text.len() > SUMMARY_LIMIT - row.len() - SUMMARY_TRUNCATED_NOTE.len());
    assert!(text.starts_with("# Report\n\n| Slurm"));
    assert!(text.ends_with(SUMMARY_TRUNCATED_NOTE));
    let body = text.strip_suffix(SUMMARY_TRUNCATED_NOTE).unwrap();
    assert!(body.ends_with(row), "a table row was cut in half");
    // Once full, further appends are dropped rather than pushing the file over the cap.
    runner.append_summary(&"more\n".repeat(100)).unwrap();
    assert!(std::fs::metadata(&summary).unwrap().len() as usize <= SUMMARY_LIMIT);
    // A summary that fits is written verbatim.
    let (runner, _) = actions_runner(dir.path(), &[]);
    runner.append_summary("| a | b |\n").unwrap();
    assert_eq!(std::fs::read_to_string(&summary).unwrap(), "| a | b |\n");
}

fn key_strategy() -> impl Strategy<Value = String> {
    "[A-Za-z_][A-Za-z0-9_-]{0,24}"
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn escaping_round_trips_through_the_runner(s in any::<String>()) {
        let data = escape_data(&s);
        prop_assert!(!data.contains(['\r', '\n']));
        prop_assert_eq!(runner_unescape_data(&data), s.clone());
        prop_assert_eq!(gha::unescape_data(&data), s.clone());
        let prop = escape_property(&s);
        prop_assert!(!prop.contains(['\r', '\n', ':', ',']));
        prop_assert_eq!(runner_unescape_property(&prop), s.clone());
        prop_assert_eq!(gha::unescape_property(&prop), s.clone());
        prop_assert_eq!(gha::unescape(&prop), s);
    }

    #[test]
    fn any_command_parses_back_to_itself(
        title in any::<String>(),
        file in "[^\r\n]{0,30}",
        message in any::<String>(),
    ) {
        let line = format_command(
            "error",
            &[("title", title.clone()), ("file", file.clone())],
            &message,
        );
        prop_assert!(!line.contains(['\r', '\n']));
        let cmd = runner_parse_command(&line, &[]).expect("parses");
        prop_assert_eq!(cmd.command, "error");
        prop_assert_eq!(cmd.data, message);
        // The runner trims the property list, so edge whitespace cannot travel; gha trims
        // property values itself, identically on both sides.
        prop_assert_eq!(cmd.properties.get("title").cloned().unwrap_or_default(), title.trim());
        prop_assert_eq!(cmd.properties.get("file").cloned().unwrap_or_default(), file.trim());
    }

    #[test]
    fn any_outputs_round_trip_through_the_runner_parser(
        pairs in proptest::collection::vec((key_strategy(), any::<String>()), 1..8),
        chunked in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (runner, _) = actions_runner(dir.path(), &[]);
        if chunked {
            let refs: Vec<(&str, &str)> =
                pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            runner.set_outputs(&refs).unwrap();
        } else {
            for (k, v) in &pairs {
                runner.set_output(k, v).unwrap();
            }
        }
        let text = std::fs::read_to_string(dir.path().join("output")).unwrap();
        prop_assert_eq!(runner_file_pairs(&text).unwrap(), pairs);
    }
}

// ---------------------------------------------------------------------------------------------
// OIDC against a loopback HTTP/1.1 server.
// ---------------------------------------------------------------------------------------------

const REQUEST_TOKEN: &str = "request-bearer-0123";
const ID_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.payload-7f3a.signature";

/// One request the fake token service received.
#[derive(Debug, Clone)]
struct Seen {
    target: String,
    authorization: Option<String>,
}

/// A tiny HTTP/1.1 server standing in for GitHub's token service (which cannot run here). It
/// answers 401 unless the bearer is [`REQUEST_TOKEN`] and 400 unless the audience is
/// `expected_audience` (percent-encoded); otherwise it plays `script` in order (the last entry
/// repeats). Returns the token URL and the log of requests.
async fn token_service(
    expected_audience: &'static str,
    script: Vec<(u16, String)>,
) -> (String, Arc<Mutex<Vec<Seen>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        let mut n = 0usize;
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                match sock.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(k) => buf.extend_from_slice(&chunk[..k]),
                }
            }
            let head = String::from_utf8_lossy(&buf).into_owned();
            let mut lines = head.split("\r\n");
            let request_line = lines.next().unwrap_or_default().to_owned();
            let target = request_line
                .split(' ')
                .nth(1)
                .unwrap_or_default()
                .to_owned();
            let authorization = lines
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
                .map(|(_, v)| v.trim().to_owned());
            log.lock().unwrap().push(Seen {
                target: target.clone(),
                authorization: authorization.clone(),
            });
            let (status, body) =
                if authorization.as_deref() != Some(&format!("Bearer {REQUEST_TOKEN}")) {
                    (401, r#"{"message":"bad bearer"}"#.to_owned())
                } else if !target.ends_with(&format!("&audience={expected_audience}")) {
                    (
                        400,
                        format!(r#"{{"message":"wrong audience in {target}"}}"#),
                    )
                } else {
                    let i = n.min(script.len() - 1);
                    n += 1;
                    script[i].clone()
                };
            let reply = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(reply.as_bytes()).await;
            let _ = sock.shutdown().await;
        }
    });
    (
        format!("http://{addr}/_apis/actions/oidc/token?api-version=2.0"),
        seen,
    )
}

fn oidc_runner(url: &str) -> (Runner, Captured) {
    let cap = Captured::default();
    let runner = Runner::from_vars([
        ("GITHUB_ACTIONS", "true"),
        ("ACTIONS_ID_TOKEN_REQUEST_URL", url),
        ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", REQUEST_TOKEN),
    ])
    .with_sink(Box::new(cap.clone()));
    (runner, cap)
}

fn ok_body() -> String {
    format!(r#"{{"count":1,"value":"{ID_TOKEN}"}}"#)
}

#[tokio::test]
async fn oidc_token_is_fetched_with_bearer_and_audience_and_masked_first() {
    let (url, seen) = token_service("sts.amazonaws.com", vec![(200, ok_body())]).await;
    let (runner, cap) = oidc_runner(&url);
    let token = runner.oidc_token(Some("sts.amazonaws.com")).await.unwrap();
    assert_eq!(token.expose(), ID_TOKEN);
    assert!(!format!("{token:?}").contains(ID_TOKEN));
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].target,
        "/_apis/actions/oidc/token?api-version=2.0&audience=sts.amazonaws.com"
    );
    // The token is registered as a secret, and that is the first time it appears in the log.
    let log = cap.text();
    let first = log.lines().find(|l| l.contains(ID_TOKEN)).unwrap();
    assert_eq!(first, format!("::add-mask::{ID_TOKEN}"));
    assert_eq!(log.matches(ID_TOKEN).count(), 1, "{log}");
    assert!(!log.contains(REQUEST_TOKEN), "{log}");
    let masks: Vec<_> = runner_process_log(&log)
        .into_iter()
        .filter(|c| c.command == "add-mask")
        .collect();
    assert_eq!(masks.len(), 1);
    assert_eq!(masks[0].data, ID_TOKEN);
}

#[tokio::test]
async fn oidc_audience_is_uri_encoded() {
    let (url, _) = token_service("https%3A%2F%2Fexample.com%2Fa%20b", vec![(200, ok_body())]).await;
    let (runner, _) = oidc_runner(&url);
    let token = runner
        .oidc_token(Some("https://example.com/a b"))
        .await
        .unwrap();
    assert_eq!(token.expose(), ID_TOKEN);
}

#[tokio::test]
async fn oidc_retries_server_errors() {
    let script = vec![
        (503, r#"{"message":"busy"}"#.to_owned()),
        (502, "bad gateway".to_owned()),
        (200, ok_body()),
    ];
    let (url, seen) = token_service("sts.amazonaws.com", script).await;
    let (runner, cap) = oidc_runner(&url);
    let token = runner.oidc_token(Some("sts.amazonaws.com")).await.unwrap();
    assert_eq!(token.expose(), ID_TOKEN);
    assert_eq!(seen.lock().unwrap().len(), 3);
    assert!(cap.text().contains(&format!("::add-mask::{ID_TOKEN}")));
}

#[tokio::test]
async fn oidc_gives_up_after_repeated_server_errors() {
    let (url, seen) = token_service("sts.amazonaws.com", vec![(500, "{}".to_owned())]).await;
    let (runner, cap) = oidc_runner(&url);
    let err = runner
        .oidc_token(Some("sts.amazonaws.com"))
        .await
        .unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("after 5 attempts") && msg.contains("500"),
        "{msg}"
    );
    assert_eq!(seen.lock().unwrap().len(), 5);
    assert!(!cap.text().contains("add-mask"));
}

#[tokio::test]
async fn oidc_refusal_is_not_retried_and_says_what_to_fix() {
    let (url, seen) = token_service(
        "sts.amazonaws.com",
        vec![(403, r#"{"message":"forbidden"}"#.to_owned())],
    )
    .await;
    let (runner, _) = oidc_runner(&url);
    let err = runner
        .oidc_token(Some("sts.amazonaws.com"))
        .await
        .unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("403") && msg.contains("id-token: write"),
        "{msg}"
    );
    assert_eq!(seen.lock().unwrap().len(), 1);

    // A wrong bearer is refused by the service (401) with the same guidance.
    let (url, seen) = token_service("sts.amazonaws.com", vec![(200, ok_body())]).await;
    let runner = Runner::from_vars([
        ("GITHUB_ACTIONS", "true"),
        ("ACTIONS_ID_TOKEN_REQUEST_URL", url.as_str()),
        ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "stale"),
    ])
    .with_sink(Box::new(Captured::default()));
    let msg = format!(
        "{:#}",
        runner
            .oidc_token(Some("sts.amazonaws.com"))
            .await
            .unwrap_err()
    );
    assert!(
        msg.contains("401") && msg.contains("id-token: write"),
        "{msg}"
    );
    assert_eq!(
        seen.lock().unwrap()[0].authorization.as_deref(),
        Some("Bearer stale")
    );
}

#[tokio::test]
async fn oidc_without_permission_tells_the_user_to_add_it() {
    for vars in [
        vec![("GITHUB_ACTIONS", "true")],
        vec![
            ("GITHUB_ACTIONS", "true"),
            ("ACTIONS_ID_TOKEN_REQUEST_URL", "http://127.0.0.1:9/x?a=b"),
        ],
        vec![
            ("GITHUB_ACTIONS", "true"),
            ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "t"),
            ("ACTIONS_ID_TOKEN_REQUEST_URL", ""),
        ],
    ] {
        let runner = Runner::from_vars(vars).with_sink(Box::new(Captured::default()));
        let err = runner
            .oidc_token(Some("sts.amazonaws.com"))
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("permissions: id-token: write"),
            "{err}"
        );
    }
}

#[tokio::test]
async fn oidc_rejects_an_answer_without_a_token() {
    let (url, _) = token_service(
        "sts.amazonaws.com",
        vec![(200, r#"{"count":0}"#.to_owned())],
    )
    .await;
    let (runner, _) = oidc_runner(&url);
    let err = runner
        .oidc_token(Some("sts.amazonaws.com"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("without an ID token"), "{err}");
}
