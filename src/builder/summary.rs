//! A finished build's outputs (`$GITHUB_OUTPUT`) and job summary.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Result;

use super::BuildOutcome;
use crate::docker::human;
use crate::gha::Runner;
use crate::spack::stats;
use crate::spack::{Area, Job};

/// Writes a finished build's outputs to `$GITHUB_OUTPUT` and its summary to the job summary.
pub fn report(job: &Job, outcome: &BuildOutcome, runner: &Runner) -> Result<()> {
    let l = &outcome.layout;
    let slurm = matches!(job, Job::Slurm(_));
    let path = |p: PathBuf| p.display().to_string();
    let mut outputs: Vec<(&str, String)> = vec![
        ("namespace", l.namespace().to_string()),
        ("buildcache_path", path(l.host(Area::Buildcache))),
        ("spack_lock", path(l.host(Area::Env).join("spack.lock"))),
        ("build_log", path(outcome.log())),
        (
            "packages_built",
            outcome.stats.census.built.len().to_string(),
        ),
        (
            "packages_reused",
            outcome.stats.census.reused.len().to_string(),
        ),
        (
            "duration_seconds",
            outcome.stats.total.as_secs().to_string(),
        ),
    ];
    if let Some(t) = job.toolchain() {
        outputs.push(("toolchain", t.to_string()));
    }
    if slurm {
        outputs.push(("view_path", path(l.host(Area::View))));
        outputs.push(("modules_path", path(l.host(Area::Modules))));
    }
    if let Some(b) = &outcome.debug_bundle {
        outputs.push(("debug_bundle", path(b.clone())));
    }
    for (k, v) in &outputs {
        runner.set_output(k, v)?;
    }

    let mut md = String::new();
    let status = match &outcome.failure {
        None => "succeeded".to_owned(),
        Some(f) => format!("failed: {f}"),
    };
    let _ = writeln!(md, "### {job}: {status}\n");
    let _ = writeln!(md, "| | |\n|---|---|");
    for (k, v) in &outputs {
        let _ = writeln!(md, "| {k} | `{v}` |");
    }
    let _ = writeln!(md, "| time | {} |", human(outcome.stats.total));
    if let Some(image) = &outcome.image {
        let _ = writeln!(md, "| image | `{image}` |");
    }
    if !outcome.stats.steps.is_empty() {
        let _ = writeln!(md, "\n| step | time |\n|---|---|");
        for s in &outcome.stats.steps {
            let _ = writeln!(md, "| {} | {} |", s.name, human(s.duration));
        }
    }
    let census = &outcome.stats.census;
    if !census.built.is_empty() || !census.reused.is_empty() {
        let list = |v: &[stats::Installed]| {
            v.iter()
                .map(|p| format!("`{p}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            md,
            "\n<details><summary>{} built, {} reused from buildcaches</summary>\n\nBuilt: {}\n\nReused: {}\n</details>",
            census.built.len(),
            census.reused.len(),
            list(&census.built),
            list(&census.reused)
        );
    }
    runner.append_summary(&md)
}
