//! The real `prepare-matrix` binary, run with a scrubbed environment (no inherited `GITHUB_*`,
//! `RUNNER_*`, `ACTIONS_*`, `INPUT_*`), its output files read back with the port of the
//! runner's parser in `tests/common`.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{in_actions, runner_file_map, runner_process_log, scrubbed};
use serde_json::Value;
use slurm_factory::catalog::{Catalog, Compiler};
use slurm_factory::matrix::Matrix;

/// What one run left behind.
struct Run {
    out: Output,
    stdout: String,
    outputs: BTreeMap<String, String>,
    summary: String,
    dir: tempfile::TempDir,
}

impl Run {
    fn matrix(&self) -> Value {
        serde_json::from_str(&self.outputs["matrix"]).unwrap()
    }

    fn entries(&self) -> Vec<Value> {
        self.matrix()["include"].as_array().unwrap().clone()
    }

    fn code(&self) -> i32 {
        self.out.status.code().unwrap()
    }
}

fn run_with(
    mut cmd: Command,
    dir: tempfile::TempDir,
    args: &[&str],
    inputs: &[(&str, &str)],
) -> Run {
    cmd.args(args);
    for (k, v) in inputs {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    let outputs = runner_file_map(&dir.path().join("output"));
    let summary = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
    Run {
        out,
        stdout,
        outputs,
        summary,
        dir,
    }
}

/// Runs `prepare-matrix` as a step inside Actions.
fn run(args: &[&str], inputs: &[(&str, &str)]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let cmd = in_actions("prepare-matrix", dir.path());
    run_with(cmd, dir, args, inputs)
}

fn assert_success(r: &Run) {
    assert_eq!(
        r.code(),
        0,
        "stdout:\n{}\nstderr:\n{}",
        r.stdout,
        String::from_utf8_lossy(&r.out.stderr)
    );
    assert!(!r.stdout.contains("::error"), "{}", r.stdout);
}

/// Every field a downstream job reads, for every kind.
const COMMON_FIELDS: &[&str] = &[
    "fingerprint",
    "ingredients",
    "name",
    "kind",
    "compiler_version",
    "arch",
    "platform",
    "glibc_floor",
    "gpu",
    "spack_target",
    "runs_on",
    "buildcache_prefix",
    "buildcache_url",
    "artifact_name",
    "timeout_minutes",
];

fn keys(e: &Value) -> Vec<String> {
    e.as_object().unwrap().keys().cloned().collect()
}

#[test]
fn slurm_all_all_yields_32_jobs_without_gcc_15() {
    let r = run(
        &[
            "--kind",
            "slurm",
            "--compiler-versions",
            "all",
            "--slurm-versions",
            "all",
        ],
        &[],
    );
    assert_success(&r);
    assert_eq!(r.outputs["count"], "32");
    let entries = r.entries();
    assert_eq!(entries.len(), 32);
    let mut artifacts = std::collections::HashSet::new();
    for e in &entries {
        for f in COMMON_FIELDS
            .iter()
            .chain(&["slurm_version", "slurm_spack_version"])
        {
            assert!(e.get(*f).is_some(), "{f} missing in {e}");
        }
        assert!(e.get("tarball_key").is_none() && e.get("tarball_url").is_none());
        assert_ne!(e["compiler_version"], "15.2.0");
        assert_eq!(e["kind"], "slurm");
        assert_eq!(e["arch"], "amd64");
        // The default platform: the lowest glibc floor.
        assert_eq!(e["platform"], "el8");
        assert_eq!(e["glibc_floor"], "2.28");
        assert_eq!(e["timeout_minutes"], 480);
        let prefix = format!(
            "slurm/el8/{}/{}/buildcache",
            e["slurm_version"].as_str().unwrap(),
            e["compiler_version"].as_str().unwrap()
        );
        assert_eq!(e["buildcache_prefix"], prefix.as_str());
        assert!(artifacts.insert(e["artifact_name"].as_str().unwrap().to_owned()));
    }
    // Catalog order: newest Slurm first, then compilers newest first.
    assert_eq!(entries[0]["name"], "Slurm 26.05 · GCC 14.2.0 · amd64 · el8");
    assert_eq!(entries[31]["name"], "Slurm 23.11 · GCC 7.5.0 · amd64 · el8");
    // The defaults are the same as `all`.
    let d = run(&["--kind", "slurm"], &[]);
    assert_eq!(d.outputs["matrix"], r.outputs["matrix"]);
    // Only GITHUB_OUTPUT and the summary were written.
    for f in ["env", "state", "path"] {
        assert_eq!(std::fs::read_to_string(r.dir.path().join(f)).unwrap(), "");
    }
}

#[test]
fn compiler_all_yields_9_jobs() {
    let r = run(&["--kind", "compiler"], &[]);
    assert_success(&r);
    assert_eq!(r.outputs["count"], "9");
    let entries = r.entries();
    assert_eq!(entries.len(), 9);
    assert_eq!(entries[0]["compiler_version"], "15.2.0");
    for e in &entries {
        assert_eq!(keys(e).len(), COMMON_FIELDS.len(), "{e}");
        let v = e["compiler_version"].as_str().unwrap();
        assert_eq!(e["artifact_name"], format!("gcc-{v}-amd64-el8").as_str());
        assert_eq!(
            e["buildcache_prefix"],
            format!("compilers/el8/{v}/buildcache").as_str()
        );
        assert_eq!(
            e["buildcache_url"],
            format!("https://slurm-factory-spack-binary-cache.vantagecompute.ai/compilers/el8/{v}/buildcache").as_str()
        );
        assert_eq!(e["timeout_minutes"], 360);
        assert_eq!(
            e["runs_on"],
            serde_json::json!(["self-hosted", "linux", "x64"])
        );
    }
    let r = run(&["--kind", "compiler", "--architectures", "all"], &[]);
    assert_success(&r);
    assert_eq!(r.outputs["count"], "18");
}

#[test]
fn inputs_are_read_from_the_environment_and_the_matrix_json_is_stable() {
    let r = run(
        &[],
        &[
            ("INPUT_KIND", "tarball"),
            ("INPUT_SLURM_VERSIONS", " 25.11\n"),
            ("INPUT_COMPILER_VERSIONS", "13.4.0"),
            ("INPUT_ARCHITECTURES", "amd64, arm64"),
        ],
    );
    assert_success(&r);
    assert_eq!(r.outputs["count"], "2");
    // The output reads back into the typed schema; the snapshot keeps the emitted field order.
    let typed: Matrix = serde_json::from_str(&r.outputs["matrix"]).unwrap();
    assert_eq!(serde_json::to_string(&typed).unwrap(), r.outputs["matrix"]);
    insta::assert_snapshot!(
        "tarball_matrix",
        redact_hashes(&serde_json::to_string_pretty(&typed).unwrap())
    );
}

/// The snapshots without the fingerprints' hashes, which change with every recipe edit
/// (tests/fingerprint.rs and src/fingerprint.rs test what they cover).
fn redact_hashes(s: &str) -> String {
    regex::Regex::new(r"(sha256:)?[0-9a-f]{12,64}")
        .unwrap()
        .replace_all(s, "[hash]")
        .into_owned()
}

#[test]
fn flags_win_over_inputs() {
    let r = run(
        &["--kind", "slurm", "--slurm-versions", "24.11"],
        &[
            ("INPUT_KIND", "compiler"),
            ("INPUT_SLURM_VERSIONS", "23.11"),
            ("INPUT_COMPILER_VERSIONS", "12.5.0"),
        ],
    );
    assert_success(&r);
    let entries = r.entries();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["kind"], "slurm");
    assert_eq!(entries[0]["slurm_version"], "24.11");
    assert_eq!(entries[0]["compiler_version"], "12.5.0");
    // A flag overrides even a hostile input, which then is never read.
    let r = run(
        &["--kind", "compiler", "--compiler-versions", "13.4.0"],
        &[("INPUT_COMPILER_VERSIONS", "$(id)")],
    );
    assert_success(&r);
    assert_eq!(r.outputs["count"], "1");
}

#[test]
fn the_summary_is_a_markdown_table() {
    let r = run(
        &[
            "--kind",
            "slurm",
            "--slurm-versions",
            "25.11",
            "--compiler-versions",
            "14.2.0 13.4.0",
            "--architectures",
            "all",
        ],
        &[],
    );
    assert_success(&r);
    assert_eq!(r.outputs["count"], "4");
    insta::assert_snapshot!("slurm_summary", redact_hashes(&r.summary));
}

/// Runs with one bad input and checks the failure contract: exit 1, exactly one workflow
/// command (the error, whose text names `expect`), nothing in `$GITHUB_OUTPUT` or the summary.
fn assert_rejected(args: &[&str], inputs: &[(&str, &str)], expect: &[&str]) {
    let r = run(args, inputs);
    assert_eq!(r.code(), 1, "{args:?} {inputs:?} accepted:\n{}", r.stdout);
    let cmds = runner_process_log(&r.stdout);
    assert_eq!(cmds.len(), 1, "{args:?} {inputs:?}: {cmds:?}\n{}", r.stdout);
    assert_eq!(cmds[0].command, "error");
    for e in expect {
        assert!(
            cmds[0].data.contains(e),
            "{args:?} {inputs:?}: {e:?} not in {:?}",
            cmds[0].data
        );
    }
    assert_eq!(
        std::fs::read_to_string(r.dir.path().join("output")).unwrap(),
        ""
    );
    assert_eq!(r.summary, "");
    assert!(r.outputs.is_empty());
}

const GCC_SUPPORTED: &str =
    "15.2.0, 14.2.0, 13.4.0, 12.5.0, 11.5.0, 10.5.0, 9.5.0, 8.5.0, 7.5.0, all";

#[test]
fn hostile_values_are_rejected_without_injecting_commands() {
    let injection = "13.4.0\n::set-env name=LD_PRELOAD::/tmp/x.so";
    let cases: &[(&str, &[&str])] = &[
        (
            "13.4.0; rm -rf /",
            &["\"13.4.0; rm -rf /\"", "';'", GCC_SUPPORTED],
        ),
        ("$(id)", &["\"$(id)\"", "'$'", GCC_SUPPORTED]),
        ("`id`", &["'`'"]),
        ("13.4.0 | cat /etc/passwd", &["'|'"]),
        ("13.4.0 && curl x", &["'&'"]),
        ("../../etc", &["'/'"]),
        ("13.4.0'", &["'\\''"]),
        (injection, &["LD_PRELOAD", "':'", GCC_SUPPORTED]),
        ("13.4.0\r\n::warning::x", &["':'"]),
        // Invisible, and not whitespace (so not trimmed like an input).
        ("13.4.0\u{200B}", &["'\\u{200b}'"]),
    ];
    for (value, expect) in cases {
        let mut want = vec!["compiler_versions"];
        want.extend_from_slice(expect);
        assert_rejected(
            &["--kind", "compiler", "--compiler-versions", value],
            &[],
            &want,
        );
        assert_rejected(
            &["--kind", "compiler"],
            &[("INPUT_COMPILER_VERSIONS", value)],
            &want,
        );
    }
    assert_rejected(
        &["--kind", "slurm"],
        &[("INPUT_SLURM_VERSIONS", "25.11\n::add-mask::x")],
        &["slurm_versions", "':'", "26.05, 25.11, 24.11, 23.11, all"],
    );
    assert_rejected(
        &["--kind", "slurm"],
        &[("INPUT_ARCHITECTURES", "amd64;reboot")],
        &["architectures", "';'", "amd64, arm64, all"],
    );
    assert_rejected(
        &[],
        &[("INPUT_KIND", "slurm\n::set-env name=A::b")],
        &["kind", "compiler, slurm, tarball"],
    );
    // The platforms input: shell and workflow-command injection, and names the catalog lacks.
    const PLATFORMS: &str = "el8, el9, ubuntu24.04, all";
    for (value, expect) in [
        ("el8\n::add-mask::x", "':'"),
        ("el8;reboot", "';'"),
        ("$(id)", "'$'"),
        ("../el8", "'/'"),
        ("EL8", "\"EL8\" is not in the catalog"),
        ("el8 rhel8", "\"rhel8\" is not in the catalog"),
        ("el8,all", "`all` cannot be combined"),
        ("el9 el9", "el9 is listed more than once"),
        (" , ", "platforms is empty"),
    ] {
        assert_rejected(
            &["--kind", "tarball"],
            &[("INPUT_PLATFORMS", value)],
            &["platforms", expect, PLATFORMS],
        );
    }
}

#[test]
fn invalid_lists_are_rejected_with_the_supported_values() {
    let many: Vec<String> = (1..=300).map(|i| format!("{i}.0.0")).collect();
    let three_hundred = many.join(",");
    let repeated = vec!["13.4.0"; 300].join(" ");
    let long = "1".repeat(5000);
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "--compiler-versions",
            "",
            &["compiler_versions is empty", GCC_SUPPORTED],
        ),
        (
            "--compiler-versions",
            " , ,\n",
            &["compiler_versions is empty"],
        ),
        (
            "--compiler-versions",
            &three_hundred,
            &[
                "\"1.0.0\"",
                "and 295 more",
                "not in the catalog",
                GCC_SUPPORTED,
            ],
        ),
        (
            "--compiler-versions",
            &repeated,
            &["13.4.0 is listed more than once"],
        ),
        ("--compiler-versions", &long, &["5000 bytes"]),
        (
            "--compiler-versions",
            "13.4.0 all",
            &["`all` cannot be combined"],
        ),
        (
            "--compiler-versions",
            "13.4",
            &["\"13.4\" is not a GCC version like 13.4.0"],
        ),
        (
            "--compiler-versions",
            "13.4.0 99.1.0 98.1.0",
            &["\"99.1.0\", \"98.1.0\" are not in the catalog"],
        ),
        (
            "--slurm-versions",
            "25.11 25.11",
            &["slurm_versions: 25.11 is listed more than once"],
        ),
        (
            "--slurm-versions",
            "25.11.6",
            &[
                "\"25.11.6\" is not a Slurm release like 25.11",
                "26.05, 25.11, 24.11, 23.11, all",
            ],
        ),
        (
            "--architectures",
            "riscv64",
            &["\"riscv64\" is not in the catalog", "amd64, arm64, all"],
        ),
        ("--architectures", "", &["architectures is empty"]),
    ];
    for (flag, value, expect) in cases {
        assert_rejected(&["--kind", "slurm", flag, value], &[], expect);
    }
    assert_rejected(
        &["--kind", "cmake"],
        &[],
        &["kind \"cmake\" is not supported"],
    );
    assert_rejected(&[], &[], &["no kind given"]);
}

/// A catalog with `n` compilers, written to `dir`.
fn big_catalog(dir: &Path, n: usize) -> PathBuf {
    let mut c = Catalog::embedded();
    c.compilers.versions = (0..n)
        .map(|i| Compiler {
            version: format!("{}.{}.0", 100 + i / 10, i % 10).parse().unwrap(),
            slurm: true,
        })
        .collect();
    c.compilers.default = c.compilers.versions[0].version.clone();
    let path = dir.join(format!("catalog-{n}.yaml"));
    std::fs::write(&path, yaml_serde::to_string(&c).unwrap()).unwrap();
    path
}

#[test]
fn matrices_over_github_limit_are_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    // 128 compilers x 2 architectures = 256 jobs: exactly GitHub's limit.
    let at_limit = big_catalog(tmp.path(), 128);
    let r = run(
        &[
            "--kind",
            "compiler",
            "--architectures",
            "all",
            "--catalog",
            at_limit.to_str().unwrap(),
        ],
        &[],
    );
    assert_success(&r);
    assert_eq!(r.outputs["count"], "256");
    // 150 x 2 = 300 jobs: rejected, from a flag or from the `catalog` input.
    let over = big_catalog(tmp.path(), 150);
    let want = ["300 jobs", "limit of 256"];
    assert_rejected(
        &[
            "--kind",
            "compiler",
            "--architectures",
            "all",
            "--catalog",
            over.to_str().unwrap(),
        ],
        &[],
        &want,
    );
    assert_rejected(
        &["--kind", "compiler"],
        &[
            ("INPUT_ARCHITECTURES", "all"),
            ("INPUT_CATALOG", over.to_str().unwrap()),
        ],
        &want,
    );
    assert_rejected(
        &[
            "--kind",
            "compiler",
            "--catalog",
            "/nonexistent/catalog.yaml",
        ],
        &[],
        &["/nonexistent/catalog.yaml"],
    );
}

#[test]
fn a_missing_output_file_fails_the_step() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = in_actions("prepare-matrix", dir.path());
    cmd.env("GITHUB_OUTPUT", dir.path().join("gone"));
    let out = cmd.args(["--kind", "compiler"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.starts_with("::error::$GITHUB_OUTPUT is set to"),
        "{stdout}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("summary.md")).unwrap(),
        ""
    );
}

#[test]
fn outside_actions_it_prints_key_value() {
    let out = scrubbed("prepare-matrix")
        .args([
            "--kind",
            "slurm",
            "--slurm-versions",
            "25.11",
            "--compiler-versions",
            "13.4.0",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    let json = lines[0].strip_prefix("matrix=").unwrap();
    let m: Value = serde_json::from_str(json).unwrap();
    assert_eq!(
        m["include"][0]["artifact_name"],
        "slurm-25.11-gcc13.4.0-amd64-el8"
    );
    assert_eq!(lines[1], "count=1");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("| Slurm 25.11 · GCC 13.4.0 · amd64 · el8 |"),
        "{stderr}"
    );
    assert!(!stderr.contains("::"), "{stderr}");

    let out = scrubbed("prepare-matrix")
        .args(["--kind", "nope"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.starts_with("error: kind \"nope\" is not supported"),
        "{stderr}"
    );
}

/// Variant isolation over the whole matrix: `prepare-matrix` for every kind, all compilers,
/// all Slurm releases, all architectures and all platforms, with and without GPU (through the
/// action inputs, as the pipelines pass them). Every distinct leg writes its own buildcache
/// prefix (compiler and Slurm legs) or tarball key (tarball legs), no buildcache prefix lies
/// inside another, every path names the leg's platform, and a CPU build of the default
/// architecture keeps the seed's layout under its platform.
#[test]
fn no_two_legs_of_any_dispatch_share_a_prefix_or_a_tarball_key() {
    // leg identity (what changes the bits) -> what the leg writes
    let mut writes: BTreeMap<String, String> = BTreeMap::new();
    let mut prefixes: BTreeMap<String, String> = BTreeMap::new();
    let mut legs = 0;
    for kind in ["compiler", "slurm", "tarball"] {
        for gpu in ["false", "true"] {
            let r = run(
                &[
                    "--kind",
                    kind,
                    "--compiler-versions",
                    "all",
                    "--slurm-versions",
                    "all",
                    "--architectures",
                    "all",
                ],
                &[("INPUT_GPU", gpu), ("INPUT_PLATFORMS", "all")],
            );
            assert_success(&r);
            for e in r.entries() {
                legs += 1;
                let s = |f: &str| e[f].as_str().unwrap_or("").to_owned();
                let leg_gpu = e["gpu"].as_bool().expect("every entry has a boolean gpu");
                assert_eq!(leg_gpu, kind != "compiler" && gpu == "true", "{e}");
                let platform = s("platform");
                let id = format!(
                    "{kind} slurm={} gcc={} arch={} gpu={leg_gpu} platform={platform}",
                    s("slurm_version"),
                    s("compiler_version"),
                    s("arch")
                );
                // Every path and name says which platform (and so which glibc) it is for.
                assert!(
                    s("buildcache_prefix").contains(&format!("/{platform}/")),
                    "{e}"
                );
                assert!(s("artifact_name").contains(&format!("-{platform}")), "{e}");
                if kind == "tarball" {
                    assert!(
                        s("tarball_key").contains(&format!("/{platform}/"))
                            && s("tarball_key").ends_with(&format!("-{platform}-software.tar.gz")),
                        "{e}"
                    );
                }
                let written = match kind {
                    "tarball" => format!("tarball:{}", s("tarball_key")),
                    _ => format!("buildcache:{}", s("buildcache_prefix")),
                };
                if kind != "tarball" {
                    prefixes.insert(s("buildcache_prefix"), id.clone());
                }
                assert!(
                    e["buildcache_url"]
                        .as_str()
                        .unwrap()
                        .ends_with(&s("buildcache_prefix")),
                    "{e}"
                );
                if kind == "tarball" {
                    assert!(
                        e["tarball_url"]
                            .as_str()
                            .unwrap()
                            .ends_with(&s("tarball_key")),
                        "{e}"
                    );
                }
                // The same leg in two dispatches (a compiler leg with and without GPU) writes
                // the same place; two different legs never do.
                if let Some(prev) = writes.get(&id) {
                    assert_eq!(prev, &written, "{id}");
                }
                writes.insert(id, written);
                // CPU amd64 keeps the seed's layout, under the platform.
                if s("arch") == "amd64" && !leg_gpu {
                    let (slurm, gcc) = (s("slurm_version"), s("compiler_version"));
                    match kind {
                        "compiler" => {
                            assert_eq!(
                                s("buildcache_prefix"),
                                format!("compilers/{platform}/{gcc}/buildcache")
                            )
                        }
                        "slurm" => assert_eq!(
                            s("buildcache_prefix"),
                            format!("slurm/{platform}/{slurm}/{gcc}/buildcache")
                        ),
                        _ => assert_eq!(
                            s("tarball_key"),
                            format!(
                                "slurm-factory/{platform}/{slurm}/{gcc}/slurm-{slurm}-gcc{gcc}-{platform}-software.tar.gz"
                            )
                        ),
                    }
                }
            }
        }
    }
    // 9 compilers × 2 archs (× 2 GPU settings), 4 × 8 × 2 (× 2) Slurm and tarball legs each,
    // on each of the 3 platforms.
    assert_eq!(legs, 3 * 2 * (9 * 2 + 2 * 4 * 8 * 2));
    assert_eq!(writes.len(), 3 * (9 * 2 + 2 * (4 * 8 * 2 * 2)));
    let mut owner: BTreeMap<&String, &String> = BTreeMap::new();
    for (id, w) in &writes {
        if let Some(other) = owner.insert(w, id) {
            panic!("{id} and {other} both write {w}");
        }
    }
    // No buildcache lies inside another one's prefix (a listing of one would see the other).
    let all: Vec<&String> = prefixes.keys().collect();
    for a in &all {
        for b in &all {
            if a != b {
                assert!(
                    !b.starts_with(&format!("{a}/")) && !b.starts_with(a.as_str()),
                    "{b} lies under {a}"
                );
            }
        }
    }
}
