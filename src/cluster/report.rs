//! What the smoke test tells people: the per-check table for the job summary, the daemons'
//! log tails inside `::group::` on failure, and the debug bundle.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::gha::Runner;

/// Lines of each log printed on failure.
pub(crate) const TAIL_LINES: usize = 40;

/// One row of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// Whether it passed.
    pub passed: bool,
    /// What was seen.
    pub detail: String,
    /// How long it took, when that means something.
    pub took: Option<Duration>,
}

impl Check {
    /// A passed check.
    pub fn pass(
        name: impl Into<String>,
        detail: impl Into<String>,
        took: Option<Duration>,
    ) -> Self {
        Check {
            name: name.into(),
            passed: true,
            detail: detail.into(),
            took,
        }
    }

    /// A failed check.
    pub fn fail(
        name: impl Into<String>,
        detail: impl Into<String>,
        took: Option<Duration>,
    ) -> Self {
        Check {
            name: name.into(),
            passed: false,
            detail: detail.into(),
            took,
        }
    }
}

/// Escapes text for a Markdown table cell (no pipes, no line breaks, no HTML).
fn cell(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace(['\r', '\n'], " ")
}

/// The job-summary table.
pub(crate) fn summary(title: &str, checks: &[Check]) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "### {}\n", cell(title));
    let _ = writeln!(md, "| Check | Result | Time |\n|---|---|---:|");
    for c in checks {
        let _ = writeln!(
            md,
            "| {} | {} {} | {} |",
            cell(&c.name),
            if c.passed { "✅" } else { "❌" },
            cell(&c.detail),
            c.took
                .map(|d| format!("{:.1} s", d.as_secs_f64()))
                .unwrap_or_default()
        );
    }
    md.push('\n');
    md
}

/// The last `n` lines of `path` (lossy UTF-8), or why it cannot be read.
pub(crate) fn tail(path: &Path, n: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        }
        Err(e) => format!("({} cannot be read: {e})", path.display()),
    }
}

/// Prints the tail of each log inside its own collapsible group. The logs are untrusted
/// text (a job's output could contain `::` lines), so they are printed with workflow
/// commands stopped.
pub(crate) fn print_tails(runner: &Runner, logs: &[(String, PathBuf)]) {
    for (name, path) in logs {
        if !path.is_file() {
            continue;
        }
        let _group = runner.group(&format!("{name}: last {TAIL_LINES} lines"));
        let log = runner.untrusted_log();
        log.line(&tail(path, TAIL_LINES));
    }
}

/// Copies `files` (name in the bundle, source) into `bundle` and writes `daemons.txt` (one
/// `name pid` line per started daemon, so anyone can check none survived). Secrets (keys)
/// are never passed here.
pub(crate) fn write_bundle(
    bundle: &Path,
    files: &[(String, PathBuf)],
    pids: &[(&str, u32)],
) -> Result<()> {
    std::fs::create_dir_all(bundle)
        .with_context(|| format!("cannot create the debug bundle {}", bundle.display()))?;
    for (name, src) in files {
        if src.is_file() {
            std::fs::copy(src, bundle.join(name))
                .with_context(|| format!("cannot copy {} into the debug bundle", src.display()))?;
        }
    }
    let mut list = String::new();
    for (name, pid) in pids {
        let _ = writeln!(list, "{name} {pid}");
    }
    std::fs::write(bundle.join("daemons.txt"), list)
        .with_context(|| format!("cannot write {}/daemons.txt", bundle.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_cells_cannot_break_the_table() {
        let md = summary(
            "Cluster smoke test",
            &[
                Check::pass("srun", "a|b\nc <script>", Some(Duration::from_millis(1500))),
                Check::fail("sbatch", "FAILED", None),
            ],
        );
        assert!(
            md.contains("| srun | ✅ a\\|b c &lt;script&gt; | 1.5 s |"),
            "{md}"
        );
        assert!(md.contains("| sbatch | ❌ FAILED |  |"), "{md}");
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        std::fs::write(&p, "1\n2\n3\n4\n").unwrap();
        assert_eq!(tail(&p, 2), "3\n4");
        assert!(tail(&dir.path().join("nope"), 2).contains("cannot be read"));
    }
}
