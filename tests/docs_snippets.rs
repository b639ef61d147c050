//! Docs that cannot lie about the actions: every YAML snippet in README.md and docs/ that uses
//! one of our actions names only inputs and outputs that action's `action.yml` declares, passes
//! secrets as inputs (never `env:`), and every `@vN` reference names the major version of
//! Cargo.toml (the tag the release job moves).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    common::repo_root()
}

/// One fenced YAML block: where it is and its text.
struct Snippet {
    file: String,
    line: usize,
    text: String,
}

fn markdown_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n != "book") {
                    walk(&p, out);
                }
            } else if p.extension().is_some_and(|x| x == "md") {
                out.push(p);
            }
        }
    }
    let mut out = vec![root().join("README.md")];
    walk(&root().join("docs"), &mut out);
    out.sort();
    out
}

fn yaml_snippets(file: &Path) -> Vec<Snippet> {
    let text = std::fs::read_to_string(file).unwrap();
    let name = file.strip_prefix(root()).unwrap().display().to_string();
    let mut out = Vec::new();
    let mut current: Option<(usize, String, String)> = None;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        match &mut current {
            None => {
                if let Some(info) = trimmed.strip_prefix("```")
                    && matches!(info.trim(), "yaml" | "yml")
                {
                    current = Some((i + 1, String::new(), String::new()));
                }
            }
            Some((start, body, _)) => {
                if trimmed.starts_with("```") {
                    out.push(Snippet {
                        file: name.clone(),
                        line: *start,
                        text: std::mem::take(body),
                    });
                    current = None;
                } else {
                    body.push_str(line);
                    body.push('\n');
                }
            }
        }
    }
    out
}

/// What an action declares.
struct Declared {
    inputs: BTreeSet<String>,
    outputs: BTreeSet<String>,
}

fn declared(action: &str) -> Option<Declared> {
    let path = root().join("actions").join(action).join("action.yml");
    let doc: yaml_serde::Value =
        yaml_serde::from_str(&std::fs::read_to_string(path).ok()?).unwrap();
    let keys = |v: &yaml_serde::Value| -> BTreeSet<String> {
        v.as_mapping()
            .map(|m| {
                m.keys()
                    .filter_map(|k| k.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    Some(Declared {
        inputs: keys(&doc["inputs"]),
        outputs: keys(&doc["outputs"]),
    })
}

fn cargo_major() -> String {
    let t = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let v = t
        .lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .unwrap()
        .trim_end_matches('"');
    format!("v{}", v.split('.').next().unwrap())
}

/// `uses:` of one of our actions: the action's name and the ref (`None` for `./actions/x`).
fn ours(uses: &str) -> Option<(String, Option<String>)> {
    if let Some(rest) = uses.strip_prefix("vantagecompute/slurm-factory/actions/") {
        let (name, r) = rest
            .split_once('@')
            .map_or((rest, None), |(n, r)| (n, Some(r)));
        return Some((name.to_owned(), Some(r.unwrap_or("").to_owned())));
    }
    uses.strip_prefix("./actions/")
        .map(|n| (n.to_owned(), None))
}

/// Environment variables that hold secrets: a composite action hands a step's `env:` to every
/// inner step, so docs must pass these as inputs.
const SECRET_VARS: &[&str] = &[
    "GPG_PRIVATE_KEY",
    "GPG_PASSPHRASE",
    "GPG_KEY_ID",
    "AWS_ROLE_ARN",
    "SLACK_WEBHOOK_URL",
    "GITHUB_TOKEN",
];

/// Every problem of one snippet (empty when it tells the truth).
fn check(snippet: &str, major: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let doc: yaml_serde::Value = match yaml_serde::from_str(snippet) {
        Ok(d) => d,
        Err(e) => return vec![format!("does not parse as YAML: {e}")],
    };
    let mut steps: Vec<&yaml_serde::Value> = Vec::new();
    fn collect<'a>(v: &'a yaml_serde::Value, out: &mut Vec<&'a yaml_serde::Value>) {
        match v {
            yaml_serde::Value::Mapping(m) => {
                if m.get("uses").is_some() {
                    out.push(v);
                }
                for (_, x) in m {
                    collect(x, out);
                }
            }
            yaml_serde::Value::Sequence(s) => s.iter().for_each(|x| collect(x, out)),
            _ => {}
        }
    }
    collect(&doc, &mut steps);
    let mut ids: BTreeMap<String, String> = BTreeMap::new();
    for st in steps {
        let Some((name, r)) = st["uses"].as_str().and_then(ours) else {
            continue;
        };
        if let Some(r) = &r
            && r != major
        {
            problems.push(format!(
                "uses actions/{name}@{r}, but the release moves {major} (Cargo.toml)"
            ));
        }
        let Some(d) = declared(&name) else {
            problems.push(format!("uses actions/{name}, which does not exist"));
            continue;
        };
        if let Some(id) = st["id"].as_str() {
            ids.insert(id.to_owned(), name.clone());
        }
        for k in st["with"].as_mapping().into_iter().flat_map(|m| m.keys()) {
            let k = k.as_str().unwrap_or_default();
            if !d.inputs.contains(k) {
                problems.push(format!(
                    "actions/{name} has no input `{k}` (it declares: {})",
                    d.inputs.iter().cloned().collect::<Vec<_>>().join(", ")
                ));
            }
        }
        for k in st["env"].as_mapping().into_iter().flat_map(|m| m.keys()) {
            let k = k.as_str().unwrap_or_default();
            if SECRET_VARS.contains(&k) {
                problems.push(format!(
                    "actions/{name} gets {k} through `env:`, which reaches every step of the action; pass it as its secret input"
                ));
            }
        }
    }
    // Outputs read anywhere in the snippet: steps.<id>.outputs.<name>.
    let mut rest = snippet;
    while let Some(i) = rest.find("steps.") {
        rest = &rest[i + "steps.".len()..];
        let word = |s: &str| -> String {
            s.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
                .collect()
        };
        let id = word(rest);
        let Some(after) = rest[id.len()..].strip_prefix(".outputs.") else {
            continue;
        };
        let out = word(after);
        if let Some(name) = ids.get(&id)
            && let Some(d) = declared(name)
            && !d.outputs.contains(&out)
        {
            problems.push(format!(
                "steps.{id}.outputs.{out}: actions/{name} has no output `{out}` (it declares: {})",
                d.outputs.iter().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
    }
    problems
}

#[test]
fn every_snippet_that_uses_our_actions_matches_their_action_yml() {
    let major = cargo_major();
    let mut checked = 0;
    let mut problems = Vec::new();
    for f in markdown_files() {
        for s in yaml_snippets(&f) {
            if !s.text.contains("actions/") {
                continue;
            }
            checked += 1;
            for p in check(&s.text, &major) {
                problems.push(format!("{}:{}: {p}", s.file, s.line));
            }
        }
    }
    assert!(checked >= 2, "only {checked} snippets use our actions");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_versioned_action_reference_names_the_released_major() {
    let major = cargo_major();
    assert_eq!(major, "v1", "the first public release is 1.x (issue 13)");
    let mut files = markdown_files();
    files.push(root().join("CHANGELOG.md"));
    let mut seen = 0;
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for (i, _) in text.match_indices("slurm-factory/actions/") {
            let tail = &text[i..];
            let end = tail
                .find(|c: char| c.is_whitespace() || c == '`' || c == ')')
                .unwrap_or(tail.len());
            let reference = &tail[..end];
            if let Some((_, r)) = reference.split_once('@') {
                seen += 1;
                assert_eq!(r, major, "{}: {reference}", f.display());
            }
        }
    }
    assert!(seen >= 2, "{seen}");
}

/// The checker catches what issue 13 found in the README.
#[test]
fn the_checker_finds_the_old_readme_bugs() {
    let old = r#"
steps:
  - uses: vantagecompute/slurm-factory/actions/build-slurm@v1
    id: build
    with:
      slurm_version: "25.11"
      flavour: fast
  - uses: vantagecompute/slurm-factory/actions/sign-and-upload@v0
    with:
      source: ${{ steps.build.outputs.buildcache }}
      destination: s3://b/p
    env:
      GPG_PRIVATE_KEY: ${{ secrets.GPG_PRIVATE_KEY }}
"#;
    let p = check(old, "v1").join("\n");
    assert!(
        p.contains(
            "steps.build.outputs.buildcache: actions/build-slurm has no output `buildcache`"
        ),
        "{p}"
    );
    assert!(p.contains("has no input `flavour`"), "{p}");
    assert!(p.contains("@v0, but the release moves v1"), "{p}");
    assert!(p.contains("gets GPG_PRIVATE_KEY through `env:`"), "{p}");
    assert!(check("a: [unclosed", "v1")[0].contains("does not parse"));
}
