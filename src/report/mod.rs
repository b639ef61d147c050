//! One report for a whole pipeline run: a Slurm × GCC table in the job summary and one Slack
//! message, instead of one notification per leg.
//!
//! [`github::run_jobs`] reads the run's jobs through the GitHub REST API with octocrab
//! (`GET /repos/{owner}/{repo}/actions/runs/{run_id}/jobs`, every page); [`Report::from_jobs`]
//! sorts them into legs by the names prepare-matrix gives them (`Slurm 25.11 · GCC 13.4.0 ·
//! amd64 · el8`, `Slurm 25.11 tarball · GCC 13.4.0 · amd64 · el8`, `GCC 13.4.0 · amd64 · el8`;
//! names without the platform, from before it was part of them, are read too) and renders the
//! table ([`Report::markdown`]) and the message ([`Report::slack_text`]).

pub(crate) mod github;
pub(crate) mod slack;

pub(crate) use crate::net::is_loopback;

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// How one job ended (or that it has not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Completed successfully.
    Passed,
    /// Failed, timed out, was cancelled or needs action.
    Failed,
    /// Skipped (a condition or a failed dependency).
    Skipped,
    /// Queued or still running.
    Pending,
}

impl State {
    /// The state of a job from the API's `status` and `conclusion`.
    pub fn of(status: &str, conclusion: Option<&str>) -> State {
        match (status, conclusion) {
            (_, Some("success")) => State::Passed,
            (_, Some("skipped")) => State::Skipped,
            (_, Some("neutral")) => State::Passed,
            (_, Some(_)) => State::Failed,
            ("completed", None) => State::Failed,
            _ => State::Pending,
        }
    }

    /// The table cell's text.
    pub fn symbol(self) -> &'static str {
        match self {
            State::Passed => "✅",
            State::Failed => "❌",
            State::Skipped => "skipped",
            State::Pending => "⏳",
        }
    }
}

/// One job of the run, as the report needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunJob {
    /// The job's display name.
    pub name: String,
    /// How it ended.
    pub state: State,
    /// Its page.
    pub html_url: String,
}

/// A build leg's place in the table, parsed from its job name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Leg {
    /// The row: `Slurm 25.11`, `Slurm 25.11 tarball`, or `GCC toolchain` (compiler legs).
    pub row: String,
    /// The GCC version (the column).
    pub gcc: String,
    /// The architecture.
    pub arch: String,
    /// The build platform (`el8`); empty in a name without one.
    pub platform: String,
}

impl Leg {
    /// Parses a leg's job name; `None` for other jobs (plan, binaries, report).
    pub fn parse(name: &str) -> Option<Leg> {
        let parts: Vec<&str> = name.split(" · ").collect();
        // A platform name as the catalog allows it (`el8`, `ubuntu24.04`).
        let platform_ok = |p: &str| {
            p.starts_with(|c: char| c.is_ascii_lowercase())
                && p.len() <= 24
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.')
        };
        // With the platform last (today's names), else without (older runs' names).
        if let [rest @ .., last] = parts.as_slice()
            && rest.len() >= 2
            && platform_ok(last)
            && let Some(leg) = Self::parse_parts(rest, last)
        {
            return Some(leg);
        }
        Self::parse_parts(&parts, "")
    }

    fn parse_parts(parts: &[&str], platform: &str) -> Option<Leg> {
        let version_ok = |v: &str| {
            !v.is_empty()
                && v.bytes()
                    .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-')
        };
        let arch_ok = |a: &str| !a.is_empty() && a.bytes().all(|b| b.is_ascii_alphanumeric());
        let platform = platform.to_owned();
        match parts {
            [slurm, gcc, arch] => {
                let gcc = gcc.strip_prefix("GCC ")?;
                let rest = slurm.strip_prefix("Slurm ")?;
                let (version, tarball) = match rest.strip_suffix(" tarball") {
                    Some(v) => (v, true),
                    None => (rest, false),
                };
                (version_ok(version) && version_ok(gcc) && arch_ok(arch)).then(|| Leg {
                    row: format!("Slurm {version}{}", if tarball { " tarball" } else { "" }),
                    gcc: gcc.to_owned(),
                    arch: (*arch).to_owned(),
                    platform,
                })
            }
            [gcc, arch] => {
                let gcc = gcc.strip_prefix("GCC ")?;
                (version_ok(gcc) && arch_ok(arch)).then(|| Leg {
                    row: "GCC toolchain".to_owned(),
                    gcc: gcc.to_owned(),
                    arch: (*arch).to_owned(),
                    platform,
                })
            }
            _ => None,
        }
    }
}

/// Orders version strings numerically, newest first (`26.05` before `25.11`, `15.2.0` before
/// `9.5.0`).
fn newest_first(a: &str, b: &str) -> std::cmp::Ordering {
    let key = |s: &str| -> Vec<u64> {
        s.split(|c: char| !c.is_ascii_digit())
            .filter(|p| !p.is_empty())
            .map(|p| p.parse().unwrap_or(0))
            .collect()
    };
    key(b).cmp(&key(a)).then_with(|| a.cmp(b))
}

/// The report of one run.
#[derive(Debug, Clone)]
pub struct Report {
    /// The pipeline's name.
    pub pipeline: String,
    /// Link to the run.
    pub run_url: Option<String>,
    /// The legs and their jobs.
    pub legs: BTreeMap<Leg, RunJob>,
    /// Every other job (plan, binaries, …), in API order.
    pub others: Vec<RunJob>,
    /// The glibc floor of each build platform (from the catalog), for the table's note.
    pub floors: BTreeMap<String, String>,
}

impl Report {
    /// Sorts a run's jobs into legs and other jobs. `exclude` names jobs to leave out (the
    /// report's own job, still running while it reports).
    pub fn from_jobs(
        pipeline: &str,
        run_url: Option<String>,
        jobs: Vec<RunJob>,
        exclude: &[&str],
    ) -> Report {
        let mut legs = BTreeMap::new();
        let mut others = Vec::new();
        for job in jobs {
            if exclude.contains(&job.name.as_str()) {
                continue;
            }
            match Leg::parse(&job.name) {
                // A re-run leaves one job per attempt only with filter=all; keep the last.
                Some(leg) => {
                    legs.insert(leg, job);
                }
                None => others.push(job),
            }
        }
        Report {
            pipeline: pipeline.to_owned(),
            run_url,
            legs,
            others,
            floors: BTreeMap::new(),
        }
    }

    /// Names the glibc floor of every catalog platform in the table's note.
    pub fn with_floors(mut self, catalog: &crate::catalog::Catalog) -> Report {
        self.floors = catalog
            .platforms
            .images
            .iter()
            .map(|p| (p.name.0.clone(), p.glibc.clone()))
            .collect();
        self
    }

    /// Legs that passed, and all legs.
    pub fn passed(&self) -> (usize, usize) {
        let passed = self
            .legs
            .values()
            .filter(|j| j.state == State::Passed)
            .count();
        (passed, self.legs.len())
    }

    /// Whether every leg and every other job passed or was skipped.
    pub fn all_green(&self) -> bool {
        self.legs
            .values()
            .chain(&self.others)
            .all(|j| matches!(j.state, State::Passed | State::Skipped))
    }

    /// The job-summary markdown: a headline and one table (rows: Slurm release, columns: GCC;
    /// each cell linked to its job), then the other jobs that did not pass.
    pub fn markdown(&self) -> String {
        let (passed, total) = self.passed();
        let mut md = String::new();
        let _ = writeln!(
            md,
            "### {}: {passed} of {total} legs passed\n",
            md_escape(&self.pipeline)
        );
        let many_arch = {
            let mut a: Vec<&str> = self.legs.keys().map(|l| l.arch.as_str()).collect();
            a.sort_unstable();
            a.dedup();
            a.len() > 1
        };
        let row_of = |l: &Leg| {
            let mut r = l.row.clone();
            if many_arch {
                r = format!("{r} · {}", l.arch);
            }
            if !l.platform.is_empty() {
                r = format!("{r} · {}", l.platform);
            }
            r
        };
        let mut rows: Vec<String> = self.legs.keys().map(row_of).collect();
        rows.sort_by(|a, b| newest_first(a, b));
        rows.dedup();
        let mut cols: Vec<&str> = self.legs.keys().map(|l| l.gcc.as_str()).collect();
        cols.sort_by(|a, b| newest_first(a, b));
        cols.dedup();
        if !rows.is_empty() {
            let _ = write!(md, "| Slurm \\ GCC |");
            for c in &cols {
                let _ = write!(md, " {c} |");
            }
            let _ = writeln!(md);
            let _ = writeln!(md, "|---|{}", "---|".repeat(cols.len()));
            for r in &rows {
                let _ = write!(md, "| {} |", md_escape(r));
                for c in &cols {
                    let cell = self
                        .legs
                        .iter()
                        .find(|(l, _)| row_of(l) == *r && l.gcc == *c)
                        .map(|(_, j)| link(j.state.symbol(), &j.html_url))
                        .unwrap_or_default();
                    let _ = write!(md, " {cell} |");
                }
                let _ = writeln!(md);
            }
            let mut platforms: Vec<&str> = self
                .legs
                .keys()
                .map(|l| l.platform.as_str())
                .filter(|p| !p.is_empty())
                .collect();
            platforms.sort_unstable();
            platforms.dedup();
            if !platforms.is_empty() {
                let built: Vec<String> = platforms
                    .iter()
                    .map(|p| match self.floors.get(*p) {
                        Some(g) => format!(
                            "`{}` (glibc floor {}: runs on hosts with glibc {} or newer)",
                            md_escape(p),
                            md_escape(g),
                            md_escape(g)
                        ),
                        None => format!("`{}`", md_escape(p)),
                    })
                    .collect();
                let _ = writeln!(md, "\nBuilt on: {}", built.join(", "));
            }
        } else {
            let _ = writeln!(md, "No build legs ran.");
        }
        let others: Vec<String> = self
            .others
            .iter()
            .map(|j| {
                format!(
                    "{} {}",
                    md_escape(&j.name),
                    link(j.state.symbol(), &j.html_url)
                )
            })
            .collect();
        if !others.is_empty() {
            let _ = writeln!(md, "\nOther jobs: {}", others.join(", "));
        }
        if let Some(u) = &self.run_url {
            let _ = writeln!(md, "\n[The run]({u})");
        }
        md
    }

    /// The Slack message (mrkdwn): one line with the count and the failed legs.
    pub fn slack_text(&self) -> String {
        use crate::report::slack::slack_escape;
        let (passed, total) = self.passed();
        let failed: Vec<String> = self
            .legs
            .values()
            .chain(&self.others)
            .filter(|j| j.state == State::Failed)
            .map(|j| format!("`{}`", slack_escape(&j.name).replace('`', "'")))
            .collect();
        let mut t = format!(
            "{} *{}*: {passed} of {total} legs passed",
            if self.all_green() {
                ":white_check_mark:"
            } else {
                ":x:"
            },
            slack_escape(&self.pipeline)
        );
        if !failed.is_empty() {
            let _ = write!(t, "; failed: {}", failed.join(", "));
        }
        if let Some(u) = &self.run_url {
            let _ = write!(t, " (<{}|run>)", slack_escape(u));
        }
        t
    }
}

fn link(text: &str, url: &str) -> String {
    if url.starts_with("https://") || url.starts_with("http://") {
        format!("[{text}]({})", url.replace(['(', ')', ' '], ""))
    } else {
        text.to_owned()
    }
}

/// Escapes what would break a table cell or start markup in a job name.
fn md_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '|' | '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '#' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leg_names_parse_and_others_do_not() {
        assert_eq!(
            Leg::parse("Slurm 25.11 · GCC 13.4.0 · amd64"),
            Some(Leg {
                row: "Slurm 25.11".into(),
                gcc: "13.4.0".into(),
                arch: "amd64".into(),
                platform: String::new(),
            })
        );
        assert_eq!(
            Leg::parse("Slurm 25.11 · GCC 13.4.0 · amd64 · el8"),
            Some(Leg {
                row: "Slurm 25.11".into(),
                gcc: "13.4.0".into(),
                arch: "amd64".into(),
                platform: "el8".into(),
            })
        );
        let g = Leg::parse("GCC 15.2.0 · arm64 · ubuntu24.04").unwrap();
        assert_eq!(
            (g.row.as_str(), g.arch.as_str(), g.platform.as_str()),
            ("GCC toolchain", "arm64", "ubuntu24.04")
        );
        assert_eq!(
            Leg::parse("Slurm 24.11 tarball · GCC 7.5.0 · arm64")
                .unwrap()
                .row,
            "Slurm 24.11 tarball"
        );
        assert_eq!(
            Leg::parse("GCC 15.2.0 · amd64").unwrap().row,
            "GCC toolchain"
        );
        for other in [
            "Plan the compiler matrix",
            "Build the slurm-factory binaries (amd64)",
            "Run report",
            "Slurm 25.11 · GCC 13.4.0 · amd64 · el8 · extra",
            "Slurm 25.11 · GCC 13.4.0 · amd64 · EL8",
            "Slurm x|y · GCC 13.4.0 · amd64",
            "GCC 13.4.0 · amd64 · el8 · el9",
        ] {
            assert_eq!(Leg::parse(other), None, "{other}");
        }
    }

    #[test]
    fn the_table_shows_each_legs_platform_and_its_glibc_floor() {
        let job = |name: &str| RunJob {
            name: name.into(),
            state: State::Passed,
            html_url: "https://example.com/j".into(),
        };
        let r = Report::from_jobs(
            "Slurm",
            None,
            vec![
                job("Slurm 25.11 · GCC 13.4.0 · amd64 · el8"),
                job("Slurm 25.11 · GCC 13.4.0 · amd64 · ubuntu24.04"),
                job("Plan the Slurm × compiler matrix"),
            ],
            &[],
        )
        .with_floors(&crate::catalog::Catalog::embedded());
        let md = r.markdown();
        assert!(md.contains("### Slurm: 2 of 2 legs passed"), "{md}");
        assert!(md.contains("| Slurm 25.11 · el8 | [✅]"), "{md}");
        assert!(md.contains("| Slurm 25.11 · ubuntu24.04 | [✅]"), "{md}");
        assert!(
            md.contains("Built on: `el8` (glibc floor 2.28: runs on hosts with glibc 2.28 or newer), `ubuntu24.04` (glibc floor 2.39"),
            "{md}"
        );
    }

    #[test]
    fn states_follow_the_api_fields() {
        assert_eq!(State::of("completed", Some("success")), State::Passed);
        assert_eq!(State::of("completed", Some("failure")), State::Failed);
        assert_eq!(State::of("completed", Some("cancelled")), State::Failed);
        assert_eq!(State::of("completed", Some("timed_out")), State::Failed);
        assert_eq!(State::of("completed", Some("skipped")), State::Skipped);
        assert_eq!(State::of("in_progress", None), State::Pending);
        assert_eq!(State::of("queued", None), State::Pending);
    }

    #[test]
    fn versions_sort_newest_first_numerically() {
        let mut v = vec!["9.5.0", "15.2.0", "13.4.0", "10.5.0"];
        v.sort_by(|a, b| newest_first(a, b));
        assert_eq!(v, ["15.2.0", "13.4.0", "10.5.0", "9.5.0"]);
    }
}
