//! Generated workflows and composite actions: drift detection, snapshots, the real linters
//! (zizmor, check-jsonschema, shellcheck), the plan → matrix contract with the real
//! `prepare-matrix`, local replay with `act`, the shared install script and `slurm-factory notify`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use slurm_factory::workflows::{self, GeneratedFile};

fn root() -> PathBuf {
    common::repo_root()
}

fn rendered() -> Vec<GeneratedFile> {
    workflows::render_all(&root()).expect("workflows-src renders")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Copies what the generator reads and writes into a fresh directory.
fn temp_tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in ["catalog.yaml", "Cargo.toml"] {
        std::fs::copy(root().join(f), dir.path().join(f)).unwrap();
    }
    for d in ["workflows-src", ".github/workflows", "actions"] {
        copy_dir(&root().join(d), &dir.path().join(d));
    }
    std::fs::create_dir_all(dir.path().join("docs")).unwrap();
    let page = workflows::docs::PLATFORMS_PAGE;
    std::fs::copy(root().join(page), dir.path().join(page)).unwrap();
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

fn workflows_cmd(root: &Path, sub: &str) -> Output {
    common::scrubbed("slurm-factory")
        .args(["workflows", sub, "--root"])
        .arg(root)
        .output()
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Drift

#[test]
fn committed_files_are_up_to_date() {
    let out = workflows_cmd(&root(), "check");
    assert!(
        out.status.success(),
        "committed generated files are stale; run `{}`:\n{}",
        workflows::FIX_COMMAND,
        text(&out)
    );
}

#[test]
fn a_hand_edit_of_a_generated_file_fails_the_check_with_a_diff() {
    let dir = temp_tree();
    assert!(workflows_cmd(dir.path(), "check").status.success());
    let ci = dir.path().join(".github/workflows/ci.yml");
    let edited = std::fs::read_to_string(&ci)
        .unwrap()
        .replace("timeout-minutes: 90", "timeout-minutes: 91");
    std::fs::write(&ci, edited).unwrap();
    let out = workflows_cmd(dir.path(), "check");
    let t = text(&out);
    assert!(
        !out.status.success(),
        "check passed on an edited file:\n{t}"
    );
    assert!(t.contains("--- a/.github/workflows/ci.yml"), "{t}");
    assert!(t.contains("-    timeout-minutes: 91"), "{t}");
    assert!(t.contains("+    timeout-minutes: 90"), "{t}");
    assert!(t.contains("workflows generate"), "no fix command in:\n{t}");

    // `generate` repairs it.
    assert!(workflows_cmd(dir.path(), "generate").status.success());
    assert!(workflows_cmd(dir.path(), "check").status.success());
}

#[test]
fn a_catalog_platform_change_fails_the_check_until_the_platforms_page_is_regenerated() {
    let dir = temp_tree();
    let catalog = dir.path().join("catalog.yaml");
    let s = std::fs::read_to_string(&catalog).unwrap();
    std::fs::write(
        &catalog,
        s.replacen("glibc: \"2.34\"", "glibc: \"2.35\"", 1),
    )
    .unwrap();
    let out = workflows_cmd(dir.path(), "check");
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(t.contains("--- a/docs/platforms.md"), "{t}");
    assert!(
        t.contains("+| RHEL / Rocky / Alma 9 | 2.34 | ✅ | ❌ | ❌ |"),
        "{t}"
    );
    assert!(workflows_cmd(dir.path(), "generate").status.success());
    assert!(workflows_cmd(dir.path(), "check").status.success());
}

#[test]
fn a_changed_source_value_fails_the_check_until_regenerated() {
    let dir = temp_tree();
    let src = dir
        .path()
        .join("workflows-src/workflows/build-and-publish-compiler-buildcache.yaml");
    let s = std::fs::read_to_string(&src).unwrap();
    assert!(s.contains("timeout_minutes: 30"));
    std::fs::write(
        &src,
        s.replacen("timeout_minutes: 30", "timeout_minutes: 45", 1),
    )
    .unwrap();
    let out = workflows_cmd(dir.path(), "check");
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains("build-and-publish-compiler-buildcache.yml"),
        "{t}"
    );
    assert!(t.contains("-    timeout-minutes: 30\n"), "{t}");
    assert!(t.contains("+    timeout-minutes: 45\n"), "{t}");

    assert!(workflows_cmd(dir.path(), "generate").status.success());
    assert!(workflows_cmd(dir.path(), "check").status.success());
}

#[test]
fn catalog_changes_flow_into_the_generated_defaults() {
    let dir = temp_tree();
    let cat = dir.path().join("catalog.yaml");
    let s = std::fs::read_to_string(&cat).unwrap();
    std::fs::write(
        &cat,
        s.replace("  default: \"25.11\"", "  default: \"24.11\""),
    )
    .unwrap();
    let out = workflows_cmd(dir.path(), "check");
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(t.contains("-        default: '25.11'"), "{t}");
    assert!(t.contains("+        default: '24.11'"), "{t}");
    assert!(t.contains("build-slurm/action.yml"), "{t}");
}

#[test]
fn orphaned_generated_files_are_reported_and_removed() {
    let dir = temp_tree();
    std::fs::remove_file(dir.path().join("workflows-src/workflows/update-docs.yaml")).unwrap();
    let out = workflows_cmd(dir.path(), "check");
    assert!(!out.status.success());
    assert!(text(&out).contains("update-docs.yml"));
    assert!(workflows_cmd(dir.path(), "generate").status.success());
    assert!(
        !dir.path()
            .join(".github/workflows/update-docs.yml")
            .exists()
    );
    assert!(workflows_cmd(dir.path(), "check").status.success());
}

#[test]
fn insecure_sources_are_refused_with_a_clear_reason() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "run: mdbook build docs",
            "run: mdbook build ${{ github.head_ref }}",
            "template-injection",
        ),
        (
            "uses: actions/upload-pages-artifact",
            "uses: actions/upload-pages-artifact@v5",
            "without @ref",
        ),
        (
            "uses: actions/upload-pages-artifact",
            "uses: someone/unpinned-action",
            "pin it",
        ),
        (
            "          persist-credentials: false\n",
            "          persist-credentials: true\n",
            "persist-credentials: false",
        ),
        (
            "why: publish the site to GitHub Pages",
            "why: \"\"",
            "no reason",
        ),
    ];
    for (from, to, expect) in cases {
        let dir = temp_tree();
        let src = dir.path().join("workflows-src/workflows/update-docs.yaml");
        let s = std::fs::read_to_string(&src).unwrap();
        assert!(s.contains(from), "fixture drifted: {from:?}");
        std::fs::write(&src, s.replacen(from, to, 1)).unwrap();
        let out = workflows_cmd(dir.path(), "generate");
        let t = text(&out);
        assert!(!out.status.success(), "{to:?} was accepted:\n{t}");
        assert!(t.contains(expect), "{to:?}: expected {expect:?} in:\n{t}");
        assert!(
            t.contains("update-docs.yaml"),
            "error does not name the source:\n{t}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Snapshots

#[test]
fn snapshots_of_every_generated_file() {
    let files = rendered();
    assert_eq!(
        files
            .iter()
            .filter(|f| f.path.starts_with(".github"))
            .count(),
        6
    );
    assert_eq!(
        files
            .iter()
            .filter(|f| f.path.starts_with("actions"))
            .count(),
        9
    );
    for f in files {
        let name = f.path.display().to_string().replace(['/', '.'], "_");
        insta::assert_snapshot!(name, f.contents);
    }
}

#[test]
fn pinned_uses_carry_version_comments_and_permissions_carry_reasons() {
    for f in rendered() {
        for line in f.contents.lines() {
            let t = line.trim_start().trim_start_matches("- ");
            if let Some(u) = t.strip_prefix("uses: ") {
                if u.starts_with("./actions/") {
                    continue;
                }
                let (action, rest) = u.split_once('@').expect("pinned");
                let (sha, comment) = rest.split_once("  # v").unwrap_or_else(|| {
                    panic!("{}: {action} has no # vX.Y.Z comment", f.path.display())
                });
                assert_eq!(sha.len(), 40, "{line}");
                assert!(comment.chars().next().unwrap().is_ascii_digit(), "{line}");
            }
            for scope in ["contents:", "id-token:", "pages:", "pull-requests:"] {
                if t.starts_with(scope) && (t.contains(" read") || t.contains(" write")) {
                    assert!(
                        t.contains("  # "),
                        "{}: permission without reason: {line}",
                        f.path.display()
                    );
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Real linters

fn generated_paths() -> Vec<PathBuf> {
    rendered()
        .into_iter()
        .map(|f| root().join(f.path))
        .collect()
}

#[test]
fn zizmor_pedantic_reports_no_findings() {
    let Some(zizmor) = common::require_tool("zizmor") else {
        return;
    };
    let out = Command::new(zizmor)
        .current_dir(root())
        .args([
            "--offline",
            "--persona=pedantic",
            "--no-progress",
            "--config",
            "zizmor.yml",
        ])
        .args(generated_paths())
        .output()
        .unwrap();
    let t = text(&out);
    assert!(out.status.success(), "zizmor found problems:\n{t}");
    assert!(t.contains("No findings to report"), "{t}");
}

#[test]
fn every_file_validates_against_the_github_schemas() {
    let Some(cj) = common::require_tool("check-jsonschema") else {
        return;
    };
    for f in rendered() {
        let schema = if f.path.starts_with(".github") {
            "vendor.github-workflows"
        } else {
            "vendor.github-actions"
        };
        let out = Command::new(&cj)
            .args(["--builtin-schema", schema])
            .arg(root().join(&f.path))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}: {}", f.path.display(), text(&out));
    }
}

fn run_blocks(doc: &yaml_serde::Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut visit_steps = |prefix: String, steps: &yaml_serde::Value| {
        for (i, st) in steps.as_sequence().into_iter().flatten().enumerate() {
            if let Some(run) = st.get("run").and_then(|r| r.as_str()) {
                let name = st.get("name").and_then(|n| n.as_str()).unwrap_or("?");
                out.push((format!("{prefix} step {i} ({name})"), run.to_owned()));
            }
        }
    };
    if let Some(jobs) = doc.get("jobs").and_then(|j| j.as_mapping()) {
        for (id, job) in jobs {
            if let Some(steps) = job.get("steps") {
                visit_steps(format!("job {}", id.as_str().unwrap_or("?")), steps);
            }
        }
    }
    if let Some(steps) = doc.get("runs").and_then(|r| r.get("steps")) {
        visit_steps("composite".into(), steps);
    }
    out
}

#[test]
fn every_run_script_and_the_install_script_pass_shellcheck() {
    let Some(sc) = common::require_tool("shellcheck") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut scripts = vec![
        root().join("actions/_shared/install.sh"),
        root().join("scripts/release-package"),
        root().join("scripts/release-checksums"),
    ];
    let mut count = 0;
    for f in rendered() {
        let doc: yaml_serde::Value = yaml_serde::from_str(&f.contents).unwrap();
        for (what, run) in run_blocks(&doc) {
            count += 1;
            let p = dir.path().join(format!("script-{count}.sh"));
            std::fs::write(
                &p,
                format!("#!/usr/bin/env bash\n# {}: {what}\n{run}", f.path.display()),
            )
            .unwrap();
            scripts.push(p);
        }
    }
    assert!(count >= 20, "only {count} run blocks found");
    let out = Command::new(sc).args(&scripts).output().unwrap();
    assert!(out.status.success(), "shellcheck:\n{}", text(&out));
}

// ---------------------------------------------------------------------------------------------
// The plan job drives the matrix

/// The fields prepare-matrix promises in every entry (its fixed schema).
const MATRIX_SCHEMA: &[&str] = &[
    "name",
    "kind",
    "compiler_version",
    "slurm_version",
    "slurm_spack_version",
    "arch",
    "platform",
    "glibc_floor",
    "gpu",
    "spack_target",
    "runs_on",
    "buildcache_prefix",
    "buildcache_url",
    "tarball_key",
    "tarball_url",
    "artifact_name",
    "timeout_minutes",
];

/// A pipeline whose matrix comes from its plan job: (workflow, kind, plan inputs at their
/// defaults, the `matrix.*` fields its jobs read).
type Planned = (PathBuf, String, Vec<(String, String)>, Vec<String>);

fn planned() -> Vec<Planned> {
    let files = rendered();
    let fields = workflows::matrix_fields(&files);
    let mut out = Vec::new();
    for f in &files {
        if !f
            .contents
            .contains("matrix: ${{ fromJson(needs.plan.outputs.matrix) }}")
        {
            continue;
        }
        let doc: yaml_serde::Value = yaml_serde::from_str(&f.contents).unwrap();
        let plan = &doc["jobs"]["plan"];
        let step = plan["steps"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|s| s["uses"].as_str() == Some("./actions/prepare-matrix"))
            .expect("the plan job runs ./actions/prepare-matrix");
        assert_eq!(
            plan["outputs"]["matrix"].as_str(),
            Some("${{ steps.plan.outputs.matrix }}")
        );
        let with = step["with"].as_mapping().unwrap();
        let kind = with
            .get("kind")
            .and_then(|k| k.as_str())
            .unwrap()
            .to_owned();
        // Dispatch inputs at their defaults, as a manual run with no changes would pass them.
        let inputs = &doc["on"]["workflow_dispatch"]["inputs"];
        let mut args = Vec::new();
        for (k, v) in with {
            let (k, v) = (k.as_str().unwrap(), v.as_str().unwrap_or_default());
            if k == "kind" || k == "build_from_source" {
                continue;
            }
            let value = match v
                .strip_prefix("${{ inputs.")
                .and_then(|r| r.strip_suffix(" }}"))
            {
                Some(input) => match &inputs[input]["default"] {
                    yaml_serde::Value::Bool(b) => b.to_string(),
                    d => d.as_str().unwrap().to_owned(),
                },
                // The plan job's checkout, and a repository variable that is not set.
                None if v == "${{ github.workspace }}" => common::repo_root().display().to_string(),
                None if v.starts_with("${{ vars.") => String::new(),
                None => v.to_owned(),
            };
            args.push((k.to_owned(), value));
        }
        out.push((f.path.clone(), kind, args, fields[&f.path].clone()));
    }
    out
}

#[test]
fn matrix_jobs_read_only_fields_of_the_prepare_matrix_schema() {
    let planned = planned();
    assert_eq!(planned.len(), 3, "three pipelines are driven by a plan job");
    for (path, _, _, fields) in planned {
        for f in &fields {
            assert!(
                MATRIX_SCHEMA.contains(&f.as_str()),
                "{} reads matrix.{f}, which prepare-matrix does not produce",
                path.display()
            );
        }
        // Every pipeline hands the leg's platform to its build (and tarball-publish) steps.
        for needed in [
            "runs_on",
            "timeout_minutes",
            "name",
            "artifact_name",
            "platform",
        ] {
            assert!(
                fields.iter().any(|f| f == needed),
                "{}: no matrix.{needed}",
                path.display()
            );
        }
    }
}

/// Runs the real prepare-matrix binary as the plan job does and returns its `matrix` output.
fn prepare_matrix(kind: &str, args: &[(String, String)]) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let mut c = common::in_actions("prepare-matrix", dir.path());
    c.env("INPUT_KIND", kind);
    for (k, v) in args {
        c.env(slurm_factory::gha::Runner::input_var(k), v);
    }
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "prepare-matrix --kind {kind} {args:?} failed (it is implemented in the foundation branch):\n{}",
        text(&out)
    );
    let output = std::fs::read_to_string(dir.path().join("output")).unwrap();
    let json = parse_output(&output, "matrix").expect("prepare-matrix wrote a matrix output");
    serde_json::from_str(&json).expect("matrix is JSON")
}

/// Reads `key` from a `$GITHUB_OUTPUT` file (heredoc or `k=v` records).
fn parse_output(text: &str, key: &str) -> Option<String> {
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if let Some(rest) = line.strip_prefix(&format!("{key}<<")) {
            let mut v = Vec::new();
            for l in lines.by_ref() {
                if l == rest {
                    return Some(v.join("\n"));
                }
                v.push(l);
            }
        } else if let Some(v) = line.strip_prefix(&format!("{key}=")) {
            return Some(v.to_owned());
        }
    }
    None
}

#[test]
fn prepare_matrix_output_has_every_field_the_matrix_jobs_read() {
    for (path, kind, args, fields) in planned() {
        let m = prepare_matrix(&kind, &args);
        let include = m["include"].as_array().unwrap_or_else(|| {
            panic!(
                "{}: matrix is not {{\"include\":[...]}}: {m}",
                path.display()
            )
        });
        assert!(!include.is_empty());
        assert!(include.len() <= 256);
        for entry in include {
            for f in &fields {
                assert!(
                    entry.get(f).is_some_and(|v| !v.is_null()),
                    "{}: entry lacks matrix.{f}: {entry}",
                    path.display()
                );
            }
            assert!(
                entry["runs_on"].is_array(),
                "runs-on takes a label array: {entry}"
            );
            assert!(
                entry["timeout_minutes"].is_u64(),
                "timeout-minutes is a number: {entry}"
            );
        }
        if path.ends_with("build-and-publish-slurm-all.yml") {
            assert_eq!(include.len(), 32, "slurm-all defaults to 4 × 8 legs");
        }
        if path.ends_with("build-and-publish-compiler-buildcache.yml") {
            assert_eq!(include.len(), 9);
        }
        if path.ends_with("build-and-publish-slurm-tarball.yml") {
            assert_eq!(include.len(), 8);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Local replay with act (host mode, no Docker)

#[test]
fn act_replays_the_compiler_plan_job_with_custom_inputs() {
    let Some(act) = common::require_tool("act") else {
        return;
    };
    let prepare = common::bin("prepare-matrix");
    let bin_dir = prepare.parent().unwrap();
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(act)
        .current_dir(root())
        .env("HOME", home.path())
        .args([
            "workflow_dispatch",
            "-W",
            ".github/workflows/build-and-publish-compiler-buildcache.yml",
            "-j",
            "plan",
            "-P",
            "ubuntu-latest=-self-hosted",
            "-P",
            "self-hosted=-self-hosted",
            "--input",
            "compiler_versions=13.4.0,14.2.0",
            "--env",
        ])
        .arg(format!("SLURM_FACTORY_BIN_DIR={}", bin_dir.display()))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let t = text(&out);
    assert!(
        t.contains("using prepare-matrix from SLURM_FACTORY_BIN_DIR"),
        "act did not run the local action with the prebuilt binary:\n{t}"
    );
    assert!(out.status.success(), "act failed:\n{t}");
    let json = t
        .lines()
        .find_map(|l| {
            l.split_once("::set-output:: matrix=")
                .map(|(_, j)| j.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no matrix output in act's log:\n{t}"));
    let m: serde_json::Value = serde_json::from_str(&json).unwrap();
    let got: BTreeSet<&str> = m["include"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["compiler_version"].as_str().unwrap())
        .collect();
    assert_eq!(got, BTreeSet::from(["13.4.0", "14.2.0"]), "{m}");
}

/// The platform axis reaches every step that depends on it: every build and tarball-publish
/// step of the generated pipelines gets its leg's platform, and every plan job passes the
/// dispatch's `platforms` to prepare-matrix, whose default is the catalog's default platform.
/// Without it tarball-publish would check no floor, and a build would run in another image
/// than its prefix names.
#[test]
fn every_build_and_tarball_step_gets_the_legs_platform() {
    let mut seen = BTreeMap::new();
    for f in rendered() {
        if !f.path.starts_with(".github/workflows") {
            continue;
        }
        let doc: yaml_serde::Value = yaml_serde::from_str(&f.contents).unwrap();
        let Some(jobs) = doc.get("jobs").and_then(|j| j.as_mapping()) else {
            continue;
        };
        for (_, job) in jobs {
            for st in job
                .get("steps")
                .and_then(|s| s.as_sequence())
                .into_iter()
                .flatten()
            {
                let Some(uses) = st.get("uses").and_then(|u| u.as_str()) else {
                    continue;
                };
                let with = |k: &str| {
                    st.get("with")
                        .and_then(|w| w.get(k))
                        .and_then(|v| v.as_str())
                        .map(str::to_owned)
                };
                let action = uses.trim_start_matches("./actions/");
                match action {
                    "build-compiler" | "build-slurm" | "tarball-publish" => {
                        assert_eq!(
                            with("platform").as_deref(),
                            Some("${{ matrix.platform }}"),
                            "{}: a {action} step without the leg's platform",
                            f.path.display()
                        );
                        *seen.entry(action.to_owned()).or_insert(0) += 1;
                    }
                    "prepare-matrix" => {
                        assert_eq!(
                            with("platforms").as_deref(),
                            Some("${{ inputs.platforms }}"),
                            "{}",
                            f.path.display()
                        );
                        let input = &doc["on"]["workflow_dispatch"]["inputs"]["platforms"];
                        assert_eq!(
                            input["default"].as_str(),
                            Some("el8"),
                            "{}",
                            f.path.display()
                        );
                        *seen.entry(action.to_owned()).or_insert(0) += 1;
                    }
                    _ => {}
                }
            }
        }
    }
    assert_eq!(
        seen,
        BTreeMap::from([
            ("build-compiler".to_owned(), 1),
            ("build-slurm".to_owned(), 2),
            ("prepare-matrix".to_owned(), 3),
            ("tarball-publish".to_owned(), 1),
        ])
    );
}

/// The plan job of slurm-all replayed with act as GitHub would run it: with the default inputs
/// every leg builds on the catalog's default platform (el8, the lowest glibc floor); with
/// `platforms` the matrix gains one leg per platform, each with its own prefix, and the job
/// summary's table shows the platform and the glibc floor of every leg.
#[test]
fn act_replays_the_slurm_plan_job_with_the_platform_axis() {
    let Some(act) = common::require_tool("act") else {
        return;
    };
    let prepare = common::bin("prepare-matrix");
    let bin_dir = prepare.parent().unwrap();
    let replay = |inputs: &[&str]| {
        let home = tempfile::tempdir().unwrap();
        let mut c = Command::new(&act);
        c.current_dir(root()).env("HOME", home.path()).args([
            "workflow_dispatch",
            "-W",
            ".github/workflows/build-and-publish-slurm-all.yml",
            "-j",
            "plan",
            "-P",
            "ubuntu-latest=-self-hosted",
            "-P",
            "self-hosted=-self-hosted",
        ]);
        for i in inputs {
            c.args(["--input", i]);
        }
        let out = c
            .arg("--env")
            .arg(format!("SLURM_FACTORY_BIN_DIR={}", bin_dir.display()))
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let t = text(&out);
        assert!(out.status.success(), "act failed:\n{t}");
        let json = t
            .lines()
            .find_map(|l| {
                l.split_once("::set-output:: matrix=")
                    .map(|(_, j)| j.trim().to_owned())
            })
            .unwrap_or_else(|| panic!("no matrix output in act's log:\n{t}"));
        let m: serde_json::Value = serde_json::from_str(&json).unwrap();
        (m["include"].as_array().unwrap().clone(), t)
    };

    // Defaults: 4 releases × 8 toolchains, all on el8.
    let (legs, _) = replay(&["gpu=false"]);
    assert_eq!(legs.len(), 32);
    for e in &legs {
        assert_eq!(e["platform"], "el8", "{e}");
        assert_eq!(e["glibc_floor"], "2.28", "{e}");
        assert!(
            e["buildcache_prefix"]
                .as_str()
                .unwrap()
                .starts_with("slurm/el8/"),
            "{e}"
        );
    }

    // Two platforms: one leg each, apart, and the summary says which glibc each needs.
    let (legs, log) = replay(&[
        "gpu=false",
        "slurm_versions=25.11",
        "compiler_versions=13.4.0",
        "platforms=ubuntu24.04, el8",
    ]);
    let got: Vec<(&str, &str, &str)> = legs
        .iter()
        .map(|e| {
            (
                e["platform"].as_str().unwrap(),
                e["glibc_floor"].as_str().unwrap(),
                e["buildcache_prefix"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("el8", "2.28", "slurm/el8/25.11/13.4.0/buildcache"),
            (
                "ubuntu24.04",
                "2.39",
                "slurm/ubuntu24.04/25.11/13.4.0/buildcache"
            ),
        ]
    );
    let summary = log
        .split("Summary - ### ")
        .nth(1)
        .unwrap_or_else(|| panic!("act printed no job summary:\n{log}"));
    assert!(
        summary.contains("| Platform | glibc floor |"),
        "the summary table has no platform column:\n{summary}"
    );
    for (name, floor) in [("el8", "2.28"), ("ubuntu24.04", "2.39")] {
        assert!(
            summary.contains(&format!("| `{name}` | `{floor}` |"))
                && summary.contains(&format!("Slurm 25.11 · GCC 13.4.0 · amd64 · {name}")),
            "the summary does not show {name}:\n{summary}"
        );
    }

    // A platform the catalog lacks fails the plan job, before any leg starts.
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(&act)
        .current_dir(root())
        .env("HOME", home.path())
        .args([
            "workflow_dispatch",
            "-W",
            ".github/workflows/build-and-publish-slurm-all.yml",
            "-j",
            "plan",
            "-P",
            "ubuntu-latest=-self-hosted",
            "--input",
            "platforms=el8,sles15",
            "--env",
        ])
        .arg(format!("SLURM_FACTORY_BIN_DIR={}", bin_dir.display()))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains("platforms: \"sles15\" is not in the catalog; supported values: el8, el9, ubuntu24.04, all"),
        "{t}"
    );
}

// ---------------------------------------------------------------------------------------------
// slurm-factory notify

/// A loopback HTTP server standing in for Slack's webhook endpoint (GitHub and Slack are not
/// reachable here): answers `statuses` in order and returns the request bodies it received.
fn webhook_server(statuses: Vec<u16>) -> (String, std::thread::JoinHandle<Vec<(String, String)>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = std::thread::spawn(move || {
        let mut got = Vec::new();
        for status in statuses {
            let (mut s, _) = listener.accept().unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut request_line = String::new();
            r.read_line(&mut request_line).unwrap();
            let mut len = 0usize;
            loop {
                let mut h = String::new();
                r.read_line(&mut h).unwrap();
                if h == "\r\n" || h.is_empty() {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; len];
            r.read_exact(&mut body).unwrap();
            got.push((request_line, String::from_utf8(body).unwrap()));
            write!(
                s,
                "HTTP/1.1 {status} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
            )
            .unwrap();
        }
        got
    });
    (format!("http://127.0.0.1:{}", addr.port()), handle)
}

fn notify(dir: &Path, webhook: Option<&str>) -> Command {
    let mut c = common::in_actions("slurm-factory", dir);
    c.arg("notify")
        .env("GITHUB_WORKFLOW", "Build and Publish Slurm")
        .env("GITHUB_SERVER_URL", "https://github.com")
        .env("GITHUB_REPOSITORY", "vantagecompute/slurm-factory")
        .env("GITHUB_RUN_ID", "4242")
        .env("INPUT_LEG", "slurm-25.11-gcc-13.4.0 <amd64>");
    if let Some(w) = webhook {
        c.env("SLACK_WEBHOOK_URL", w);
    }
    c
}

#[test]
fn notify_posts_one_message_and_masks_the_webhook() {
    let (base, server) = webhook_server(vec![200]);
    let url = format!("{base}/services/T000/B000/s3cr3tT0ken");
    let dir = tempfile::tempdir().unwrap();
    let out = notify(dir.path(), Some(&url)).output().unwrap();
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let got = server.join().unwrap();
    assert_eq!(got.len(), 1);
    assert!(
        got[0]
            .0
            .starts_with("POST /services/T000/B000/s3cr3tT0ken ")
    );
    let body: serde_json::Value = serde_json::from_str(&got[0].1).unwrap();
    let msg = body["text"].as_str().unwrap();
    assert!(msg.contains("*Build and Publish Slurm* failed"), "{msg}");
    assert!(
        msg.contains("slurm-25.11-gcc-13.4.0 &lt;amd64&gt;"),
        "{msg}"
    );
    assert!(
        msg.contains("<https://github.com/vantagecompute/slurm-factory/actions/runs/4242|run log>"),
        "{msg}"
    );
    // The URL is registered as a secret before anything else and never printed otherwise.
    let first = t.lines().next().unwrap();
    assert_eq!(first, format!("::add-mask::{url}"));
    assert_eq!(t.matches("s3cr3tT0ken").count(), 1, "{t}");
}

#[test]
fn notify_without_a_webhook_is_a_noop_with_a_notice() {
    let dir = tempfile::tempdir().unwrap();
    let out = notify(dir.path(), None).output().unwrap();
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("::notice::SLACK_WEBHOOK_URL is not set"), "{t}");
    let out = notify(dir.path(), Some("  ")).output().unwrap();
    assert!(out.status.success());
}

#[test]
fn notify_rejects_clear_text_webhooks_and_reports_http_errors_without_the_url() {
    let dir = tempfile::tempdir().unwrap();
    let out = notify(
        dir.path(),
        Some("http://hooks.example.com/services/T/B/s3cr3t"),
    )
    .output()
    .unwrap();
    let t = text(&out);
    assert!(!out.status.success());
    assert!(t.contains("only https://"), "{t}");
    assert_eq!(
        t.matches("s3cr3t").count(),
        1,
        "only the mask line may hold it: {t}"
    );

    let out = notify(dir.path(), Some("not a url s3cr3t"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(text(&out).contains("not a valid URL (value not shown)"));

    // 500 then 500: retried once, then a clear error without the URL.
    let (base, server) = webhook_server(vec![500, 500]);
    let out = notify(dir.path(), Some(&format!("{base}/services/s3cr3t")))
        .output()
        .unwrap();
    let t = text(&out);
    assert!(!out.status.success());
    assert_eq!(server.join().unwrap().len(), 2);
    assert!(t.contains("after 2 attempts"), "{t}");
    assert_eq!(t.matches("s3cr3t").count(), 1, "{t}");

    // 404: not retried.
    let (base, server) = webhook_server(vec![404]);
    let out = notify(dir.path(), Some(&format!("{base}/services/s3cr3t")))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(server.join().unwrap().len(), 1);
    assert!(text(&out).contains("HTTP 404"));
}

/// What an action's `run` step executes and exchanges with the binary.
struct ActionRun {
    /// The binary (`prepare-matrix`, `slurm-factory`, ...).
    bin: String,
    /// Arguments after the binary (e.g. `notify`).
    args: Vec<String>,
    /// Inputs mapped to `INPUT_<NAME>` on the run step, lower-cased.
    inputs: Vec<String>,
    /// The action's outputs.
    outputs: Vec<String>,
}

fn action_run(action: &str) -> ActionRun {
    let path = root().join("actions").join(action).join("action.yml");
    let doc: yaml_serde::Value =
        yaml_serde::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let steps = doc["runs"]["steps"].as_sequence().unwrap();
    let run = steps
        .iter()
        .find(|s| s["id"].as_str() == Some("run"))
        .unwrap_or_else(|| panic!("{}: no step with id `run`", path.display()));
    let exec: Vec<String> = run["run"]
        .as_str()
        .unwrap()
        .split_whitespace()
        .skip_while(|w| *w != "exec")
        .skip(1)
        .map(|w| w.trim_matches('"').to_owned())
        .collect();
    assert!(
        !exec.is_empty(),
        "{}: the run step does not exec a binary",
        path.display()
    );
    ActionRun {
        bin: exec[0].rsplit('/').next().unwrap().to_owned(),
        args: exec[1..].to_vec(),
        inputs: run["env"]
            .as_mapping()
            .unwrap()
            .keys()
            .filter_map(|k| k.as_str()?.strip_prefix("INPUT_").map(str::to_lowercase))
            .collect(),
        outputs: doc["outputs"]
            .as_mapping()
            .map(|m| m.keys().map(|k| k.as_str().unwrap().to_owned()).collect())
            .unwrap_or_default(),
    }
}

fn action_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root().join("actions"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("action.yml").is_file())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Every input an action maps into `INPUT_<NAME>` is one its binary reads: the binary's
/// `--help` documents each input it reads as `[input: <name>]`.
#[test]
fn every_action_input_is_read_by_its_binary() {
    let names = action_names();
    assert!(names.len() >= 7, "{names:?}");
    for action in names {
        let run = action_run(&action);
        let help = Command::new(common::bin(&run.bin))
            .args(&run.args)
            .arg("--help")
            .output()
            .unwrap();
        assert!(help.status.success(), "{action}: {} --help failed", run.bin);
        let help: String = String::from_utf8_lossy(&help.stdout)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        for input in &run.inputs {
            assert!(
                help.contains(&format!("[input: {input}]")),
                "action {action} maps input `{input}` but `{} {}` does not read it:\n{help}",
                run.bin,
                run.args.join(" ")
            );
        }
    }
}

/// The outputs the prepare-matrix and sign-and-upload actions re-export are the ones their
/// binaries write (the build actions' outputs are checked by the Docker engine test in
/// tests/build, which runs a real build).
#[test]
fn action_outputs_are_written_by_their_binaries() {
    let dir = tempfile::tempdir().unwrap();
    let written = |out: &Output, file: &Path| -> Vec<String> {
        assert!(out.status.success(), "{}", text(out));
        common::runner_file_map(file).into_keys().collect()
    };
    let pm = action_run("prepare-matrix");
    let out = common::in_actions("prepare-matrix", dir.path())
        .args(["--kind", "compiler", "--compiler-versions", "13.4.0"])
        .output()
        .unwrap();
    let keys = written(&out, &dir.path().join("output"));
    for o in &pm.outputs {
        assert!(
            keys.contains(o),
            "prepare-matrix does not write `{o}`: {keys:?}"
        );
    }

    let su = action_run("sign-and-upload");
    let dir = tempfile::tempdir().unwrap();
    let fixtures = root().join("tests/fixtures/spack-v3");
    let out = common::in_actions("sign-and-upload", dir.path())
        .arg("--source")
        .arg(fixtures.join("unsigned"))
        .arg("--destination")
        .arg(format!("file://{}", dir.path().join("mirror").display()))
        .arg("--key-file")
        .arg(fixtures.join("keys/demo-signer.sec.asc"))
        .output()
        .unwrap();
    let keys = written(&out, &dir.path().join("output"));
    for o in &su.outputs {
        assert!(
            keys.contains(o),
            "sign-and-upload does not write `{o}`: {keys:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Release: the major tag (issue 13)

/// The `run:` script of the step named `name` in job `job` of a generated workflow.
fn step_script(workflow: &str, job: &str, name: &str) -> String {
    let f = rendered()
        .into_iter()
        .find(|f| f.path == Path::new(".github/workflows").join(workflow))
        .unwrap();
    let doc: yaml_serde::Value = yaml_serde::from_str(&f.contents).unwrap();
    doc["jobs"][job]["steps"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|s| s["name"].as_str() == Some(name))
        .and_then(|s| s["run"].as_str())
        .unwrap_or_else(|| panic!("{workflow}: job {job} has no run step {name:?}"))
        .to_owned()
}

fn bash(script: &str, dir: &Path, env: &[(&str, &str)]) -> Output {
    let mut c = Command::new("bash");
    c.arg("-e").arg("-c").arg(script).current_dir(dir);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

#[test]
fn the_release_job_moves_the_major_tag_of_the_version() {
    let name_tag = step_script(
        "release.yml",
        "release",
        "Name the major tag the release moves",
    );
    let major_of = |tag: &str| -> Result<String, String> {
        let dir = tempfile::tempdir().unwrap();
        let out_file = dir.path().join("output");
        std::fs::write(&out_file, "").unwrap();
        let out = bash(
            &name_tag,
            dir.path(),
            &[
                ("GITHUB_REF_NAME", tag),
                ("GITHUB_OUTPUT", out_file.to_str().unwrap()),
            ],
        );
        if out.status.success() {
            Ok(common::runner_file_map(&out_file)["tag"].clone())
        } else {
            Err(text(&out))
        }
    };
    assert_eq!(major_of("v1.0.0").unwrap(), "v1");
    assert_eq!(major_of("v1.2.3").unwrap(), "v1");
    assert_eq!(major_of("v2.0.0").unwrap(), "v2");
    assert_eq!(major_of("v10.4.1").unwrap(), "v10");
    assert!(major_of("v0.1.0").unwrap_err().contains("0.x release"));
    for bad in ["v1.2", "1.0.0", "v1.0.0-rc1", "v01.0.0", "v1.0.0\nv2"] {
        assert!(major_of(bad).is_err(), "{bad:?}");
    }

    // The step that moves it: run against a stand-in `gh` (GitHub's API cannot be reached here)
    // that records every call; the script's own logic (which ref, create or update) is real.
    let move_tag = step_script(
        "release.yml",
        "release",
        "Commit the checksums and move the major tag",
    );
    for (tag, exists) in [("v1.0.0", false), ("v1.2.3", true), ("v2.0.0", false)] {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        let git = |args: &[&str]| {
            let o = Command::new("git")
                .current_dir(p)
                .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
                .args(args)
                .output()
                .unwrap();
            assert!(o.status.success(), "git {args:?}: {}", text(&o));
        };
        git(&["init", "-q"]);
        std::fs::write(p.join("README.md"), "x\n").unwrap();
        git(&["add", "README.md"]);
        git(&["commit", "-q", "-m", "init"]);
        // The release job's previous step: scripts/release-checksums over the packaged assets.
        std::fs::create_dir_all(p.join("dist")).unwrap();
        std::fs::write(
            p.join(format!(
                "dist/slurm-factory-{tag}-x86_64-unknown-linux-musl.tar.gz"
            )),
            b"asset",
        )
        .unwrap();
        let sums = Command::new(root().join("scripts/release-checksums"))
            .arg(tag)
            .arg(p.join("dist"))
            .output()
            .unwrap();
        assert!(sums.status.success(), "{}", text(&sums));
        let fake = p.join("fakebin");
        std::fs::create_dir_all(&fake).unwrap();
        let log = p.join("gh-calls");
        std::fs::write(
            fake.join("gh"),
            format!(
                "#!/usr/bin/env bash\nprintf '%s\\n' \"$*\" >> '{log}'\ncase \"$*\" in\n  *git/ref/tags/*) exit {missing} ;;\n  *git/blobs*) echo blobsha ;;\n  *git/trees*) echo treesha ;;\n  *git/commits*) echo commitsha ;;\nesac\n",
                log = log.display(),
                missing = if exists { 0 } else { 1 }
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(fake.join("gh"), std::fs::Permissions::from_mode(0o755)).unwrap();
        let major = major_of(tag).unwrap();
        let path = format!("{}:{}", fake.display(), std::env::var("PATH").unwrap());
        let out = bash(
            &move_tag,
            p,
            &[
                ("PATH", &path),
                ("GITHUB_REF_NAME", tag),
                ("GITHUB_REPOSITORY", "vantagecompute/slurm-factory"),
                ("MAJOR_TAG", &major),
            ],
        );
        assert!(out.status.success(), "{tag}: {}", text(&out));
        let calls = std::fs::read_to_string(&log).unwrap();
        let expected = if exists {
            format!(
                "api -X PATCH repos/vantagecompute/slurm-factory/git/refs/tags/{major} -f sha=commitsha -F force=true"
            )
        } else {
            format!(
                "api repos/vantagecompute/slurm-factory/git/refs -f ref=refs/tags/{major} -f sha=commitsha"
            )
        };
        assert!(calls.lines().any(|l| l == expected), "{tag}: {calls}");
        assert!(!calls.contains("refs/tags/v0"), "{tag} touched v0: {calls}");
        let sums = std::fs::read_to_string(p.join("checksums.txt")).unwrap();
        assert!(
            sums.contains(&format!("slurm-factory-{tag}-x86_64")),
            "{sums}"
        );
    }

    // The tag must match Cargo.toml, which is 1.0.0: the first public release.
    let check = step_script(
        "release.yml",
        "build",
        "Check that the tag matches Cargo.toml",
    );
    assert!(
        bash(&check, &root(), &[("GITHUB_REF_NAME", "v1.0.0")])
            .status
            .success()
    );
    assert!(
        !bash(&check, &root(), &[("GITHUB_REF_NAME", "v0.1.0")])
            .status
            .success()
    );
}

// ---------------------------------------------------------------------------------------------
// Secrets reach only the step that runs our binary (issue 13)

fn holds_secret(v: &str) -> bool {
    v.contains("secrets.") || v.contains("github.token")
}

fn strings(v: &yaml_serde::Value, out: &mut Vec<String>) {
    match v {
        yaml_serde::Value::String(s) => out.push(s.clone()),
        yaml_serde::Value::Mapping(m) => m.iter().for_each(|(_, x)| strings(x, out)),
        yaml_serde::Value::Sequence(s) => s.iter().for_each(|x| strings(x, out)),
        _ => {}
    }
}

/// For one action: the inputs that only its `run` step (the one that execs our binary) reads.
fn binary_only_inputs(action: &str) -> BTreeSet<String> {
    let path = root().join("actions").join(action).join("action.yml");
    let doc: yaml_serde::Value =
        yaml_serde::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let inputs: Vec<String> = doc["inputs"]
        .as_mapping()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect();
    let mut ok = BTreeSet::new();
    for input in inputs {
        let needle = format!("inputs.{input} ");
        let mut readers = Vec::new();
        for st in doc["runs"]["steps"].as_sequence().unwrap() {
            let mut all = Vec::new();
            strings(st, &mut all);
            if all.iter().any(|s| s.contains(&needle)) {
                readers.push(st);
            }
        }
        let only_binary = readers.len() == 1
            && readers[0]["id"].as_str() == Some("run")
            && readers[0]["run"]
                .as_str()
                .is_some_and(|r| r.trim_start().starts_with("exec \"$SF_BIN_DIR/"));
        if only_binary {
            ok.insert(input);
        }
    }
    ok
}

#[test]
fn no_secret_reaches_a_step_other_than_our_binary() {
    let mut problems = Vec::new();
    let mut secret_uses = 0;
    for f in rendered() {
        let doc: yaml_serde::Value = yaml_serde::from_str(&f.contents).unwrap();
        let file = f.path.display().to_string();
        if f.path.starts_with(".github") {
            let release = f.path.ends_with("release.yml");
            let mut top = Vec::new();
            strings(&doc["env"], &mut top);
            if top.iter().any(|s| holds_secret(s)) {
                problems.push(format!("{file}: workflow env holds a secret"));
            }
            for (id, job) in doc["jobs"].as_mapping().unwrap() {
                let id = id.as_str().unwrap();
                let mut env = Vec::new();
                strings(&job["env"], &mut env);
                if env.iter().any(|s| holds_secret(s)) {
                    problems.push(format!("{file}: job {id}: job env holds a secret"));
                }
                for st in job["steps"].as_sequence().unwrap() {
                    let name = st["name"].as_str().unwrap_or("?");
                    let uses = st["uses"].as_str().unwrap_or("");
                    let mut env = Vec::new();
                    strings(&st["env"], &mut env);
                    // The release job's own `gh` steps need the job token; nothing else does.
                    let token_for_gh = release
                        && st["run"].as_str().is_some_and(|r| r.contains("gh "))
                        && env.iter().all(|s| !s.contains("secrets."));
                    if env.iter().any(|s| holds_secret(s)) && !token_for_gh {
                        problems.push(format!("{file}: {id}/{name}: a secret in `env:`"));
                    }
                    let with = st["with"].as_mapping();
                    for (k, v) in with.into_iter().flatten() {
                        let k = k.as_str().unwrap();
                        let Some(v) = v.as_str().filter(|v| holds_secret(v)) else {
                            continue;
                        };
                        secret_uses += 1;
                        match uses.strip_prefix("./actions/") {
                            None => problems.push(format!(
                                "{file}: {id}/{name}: third-party {uses} receives {v}"
                            )),
                            Some(action) => {
                                if !binary_only_inputs(action).contains(k) {
                                    problems.push(format!(
                                        "{file}: {id}/{name}: input {k} of {action} (given {v}) reaches a step other than the binary's"
                                    ));
                                }
                            }
                        }
                    }
                }
            }
        } else {
            // An action: no step but the binary's reads a secret-looking variable.
            for st in doc["runs"]["steps"].as_sequence().unwrap() {
                if st["id"].as_str() == Some("run") {
                    continue;
                }
                let mut all = Vec::new();
                strings(st, &mut all);
                for s in all {
                    if holds_secret(&s)
                        || ["GPG_", "AWS_ROLE_ARN", "SLACK_WEBHOOK", "GITHUB_TOKEN"]
                            .iter()
                            .any(|v| s.contains(v))
                    {
                        problems.push(format!("{file}: step {:?} sees {s}", st["name"]));
                    }
                }
            }
        }
    }
    assert!(secret_uses >= 20, "only {secret_uses} secret inputs found");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_generator_refuses_secrets_outside_secret_inputs() {
    let cases = [
        (
            "      - name: Sign and upload the buildcache\n        id: upload\n",
            "      - name: Sign and upload the buildcache\n        id: upload\n        env:\n          GPG_PRIVATE_KEY: ${{ secrets.GPG_PRIVATE_KEY }}\n",
            "step env holds a secret",
        ),
        (
            "          source: ${{ steps.build.outputs.buildcache_path }}\n",
            "          source: ${{ secrets.GPG_PRIVATE_KEY }}\n",
            "receives a secret but is not one of the action's `secrets:`",
        ),
        (
            "          source: ${{ steps.build.outputs.buildcache_path }}\n",
            "          source: ${{ steps.build.outputs.buildcache_path }}\n          sauce: x\n",
            "has no input \"sauce\"",
        ),
    ];
    for (from, to, needle) in cases {
        let dir = temp_tree();
        let p = dir
            .path()
            .join("workflows-src/workflows/build-and-publish-compiler-buildcache.yaml");
        let s = std::fs::read_to_string(&p).unwrap();
        assert!(s.contains(from), "{from}");
        std::fs::write(&p, s.replacen(from, to, 1)).unwrap();
        let out = workflows_cmd(dir.path(), "check");
        assert!(!out.status.success());
        assert!(text(&out).contains(needle), "{needle}: {}", text(&out));
    }
}

// ---------------------------------------------------------------------------------------------
// Pipeline shape (issue 13)

fn workflow_doc(name: &str) -> yaml_serde::Value {
    let f = rendered()
        .into_iter()
        .find(|f| f.path == Path::new(".github/workflows").join(name))
        .unwrap();
    yaml_serde::from_str(&f.contents).unwrap()
}

#[test]
fn build_pipelines_build_binaries_once_check_first_and_report_last() {
    for wf in [
        "build-and-publish-compiler-buildcache.yml",
        "build-and-publish-slurm-all.yml",
        "build-and-publish-slurm-tarball.yml",
    ] {
        let doc = workflow_doc(wf);
        let jobs = doc["jobs"].as_mapping().unwrap();
        let ids: Vec<&str> = jobs.keys().map(|k| k.as_str().unwrap()).collect();
        assert_eq!(ids, ["plan", "binaries", "build", "report"], "{wf}");
        // Legs: checkout, the binaries artifact, then preflight before any build step; no Rust.
        let steps = doc["jobs"]["build"]["steps"].as_sequence().unwrap();
        let uses: Vec<&str> = steps
            .iter()
            .map(|s| s["uses"].as_str().unwrap_or("run"))
            .collect();
        assert!(uses[0].starts_with("actions/checkout@"), "{wf}: {uses:?}");
        assert!(
            uses[1].starts_with("actions/download-artifact@"),
            "{wf}: {uses:?}"
        );
        assert_eq!(uses[2], "./actions/preflight", "{wf}: {uses:?}");
        assert!(uses[3].starts_with("./actions/build-"), "{wf}: {uses:?}");
        for s in steps {
            let all = format!("{s:?}");
            assert!(
                !all.contains("cargo") && !all.contains("rustup"),
                "{wf}: {all}"
            );
            if s["uses"]
                .as_str()
                .is_some_and(|u| u.starts_with("./actions/"))
            {
                assert_eq!(
                    s["with"]["binaries"].as_str(),
                    Some("${{ runner.temp }}/slurm-factory-bin"),
                    "{wf}: {all}"
                );
                assert!(s["with"]["build_from_source"].is_null(), "{wf}: {all}");
            }
        }
        assert_eq!(
            doc["jobs"]["build"]["needs"],
            yaml_serde::from_str::<yaml_serde::Value>("[plan, binaries]").unwrap()
        );
        // The binaries job builds static musl binaries and publishes SHA256SUMS.
        let b = format!("{:?}", doc["jobs"]["binaries"]);
        assert!(
            b.contains("--target") && b.contains("SHA256SUMS") && b.contains("musl-tools"),
            "{b}"
        );
        // An empty plan (every leg already built: count 0, `{"include":[]}`) skips every job
        // after it: GitHub fails a matrix whose include is empty, and the report job downloads
        // the binaries artifact, which an empty plan never builds.
        let planned = "${{ needs.plan.outputs.count != '0' }}";
        assert_eq!(
            doc["jobs"]["binaries"]["if"].as_str(),
            Some(planned),
            "{wf}"
        );
        assert_eq!(doc["jobs"]["build"]["if"].as_str(), Some(planned), "{wf}");
        // The report job runs last, always (even after a failed plan), but not after an empty
        // one, with actions: read.
        let r = &doc["jobs"]["report"];
        assert_eq!(
            r["if"].as_str(),
            Some("${{ always() && needs.plan.outputs.count != '0' }}"),
            "{wf}"
        );
        // The plan gets `force` from the dispatch form and the pins from a repository
        // variable, never a secret (the plan job has no signing key).
        let plan = format!("{:?}", doc["jobs"]["plan"]);
        assert!(
            plan.contains("${{ inputs.force }}")
                && plan.contains("${{ vars.SLURM_FACTORY_SIGNING_FINGERPRINTS }}")
                && !plan.contains("secrets."),
            "{wf}: {plan}"
        );
        assert_eq!(
            doc["on"]["workflow_dispatch"]["inputs"]["force"]["default"].as_bool(),
            Some(false),
            "{wf}"
        );
        // The step that publishes hands the leg to its binary, which stamps it.
        let build = format!("{:?}", doc["jobs"]["build"]);
        assert!(build.contains("${{ toJSON(matrix) }}"), "{wf}");
        assert_eq!(r["permissions"]["actions"].as_str(), Some("read"), "{wf}");
        assert_eq!(
            r["needs"],
            yaml_serde::from_str::<yaml_serde::Value>("[plan, binaries, build]").unwrap()
        );
        let last = r["steps"].as_sequence().unwrap().last().unwrap();
        assert_eq!(last["uses"].as_str(), Some("./actions/report"));
        // One Slack message per run: the legs no longer notify one by one.
        assert!(
            !format!("{:?}", doc["jobs"]["build"]).contains("./actions/notify"),
            "{wf}"
        );
    }
    // no_cache reaches build-slurm in both Slurm pipelines.
    for wf in [
        "build-and-publish-slurm-all.yml",
        "build-and-publish-slurm-tarball.yml",
    ] {
        let doc = workflow_doc(wf);
        assert_eq!(
            doc["on"]["workflow_dispatch"]["inputs"]["no_cache"]["type"].as_str(),
            Some("boolean"),
            "{wf}"
        );
        let build = doc["jobs"]["build"]["steps"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|s| s["uses"].as_str() == Some("./actions/build-slurm"))
            .unwrap();
        assert_eq!(
            build["with"]["no_cache"].as_str(),
            Some("${{ inputs.no_cache }}")
        );
    }
}

// The act replays of whole pipelines, with every binary of ours real, are in tests/rehearsal.rs.

/// Trust wiring, part 1: every action whose binary reads pinned keys (`[input:
/// trusted_fingerprints]` in its `--help`) declares both `trusted_fingerprints` and
/// `trusted_keys` and maps them to the binary; at least build-slurm and test-install do.
#[test]
fn every_action_that_installs_from_a_signed_cache_takes_the_pins() {
    let mut pinned = Vec::new();
    for action in action_names() {
        let run = action_run(&action);
        let help = Command::new(common::bin(&run.bin))
            .args(&run.args)
            .arg("--help")
            .output()
            .unwrap();
        let help = String::from_utf8_lossy(&help.stdout).into_owned();
        if !help.contains("[input: trusted_fingerprints]") {
            continue;
        }
        for input in ["trusted_fingerprints", "trusted_keys"] {
            assert!(
                run.inputs.iter().any(|i| i == input),
                "action {action} runs {} which reads `{input}`, but does not declare it",
                run.bin
            );
        }
        pinned.push(action);
    }
    for must in ["build-slurm", "test-install"] {
        assert!(pinned.iter().any(|a| a == must), "{pinned:?}");
    }
    assert!(
        action_run("preflight")
            .outputs
            .iter()
            .any(|o| o == "fingerprint"),
        "preflight does not export `fingerprint`"
    );
}

/// Trust wiring, part 2: in every generated build pipeline, each step that installs from a
/// signed cache (build-slurm, test-install) pins the key the leg signs with, the output
/// `fingerprint` of the job's own `preflight` step, plus every catalog pin; none trusts a
/// repository variable or what a mirror publishes.
#[test]
fn pipelines_pin_the_key_their_preflight_checked() {
    let catalog = slurm_factory::catalog::Catalog::embedded();
    let mut wired = 0;
    for path in generated_paths() {
        let doc: yaml_serde::Value =
            yaml_serde::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let Some(jobs) = doc["jobs"].as_mapping() else {
            continue;
        };
        for (job, body) in jobs {
            let Some(steps) = body["steps"].as_sequence() else {
                continue;
            };
            let has_preflight = steps.iter().any(|s| {
                s["id"].as_str() == Some("preflight")
                    && s["uses"].as_str() == Some("./actions/preflight")
            });
            for s in steps {
                let uses = s["uses"].as_str().unwrap_or_default();
                if uses != "./actions/build-slurm" && uses != "./actions/test-install" {
                    continue;
                }
                let where_ = format!("{} job {job:?} step {uses}", path.display());
                assert!(
                    has_preflight,
                    "{where_}: no preflight step to take the key from"
                );
                let pins = s["with"]["trusted_fingerprints"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{where_}: no trusted_fingerprints"));
                let lines: Vec<&str> = pins.lines().map(str::trim).collect();
                assert!(
                    lines.contains(&"${{ steps.preflight.outputs.fingerprint }}"),
                    "{where_}: does not pin the preflight key: {pins:?}"
                );
                for f in catalog.signing_fingerprints() {
                    assert!(
                        lines.contains(&f.as_str()),
                        "{where_}: misses catalog pin {f}"
                    );
                }
                assert!(!pins.contains("vars."), "{where_}: {pins:?}");
                wired += 1;
            }
        }
    }
    // compiler: test-install; slurm-all: build-slurm, test-install; tarball: both.
    assert_eq!(wired, 5);
}
