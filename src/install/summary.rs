//! The per-check results of `test-install` and their Markdown table for the job summary.

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// Whether it passed.
    pub ok: bool,
    /// Evidence or the reason it failed.
    pub detail: String,
}

impl Check {
    /// A passed check.
    pub fn pass(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Check {
            name: name.into(),
            ok: true,
            detail: detail.into(),
        }
    }
    /// A failed check.
    pub fn fail(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Check {
            name: name.into(),
            ok: false,
            detail: detail.into(),
        }
    }
}

/// All checks of one run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// What was installed from where (the table's caption).
    pub title: String,
    /// The checks in order.
    pub checks: Vec<Check>,
}

impl Report {
    /// Whether every check passed (and there was at least one).
    pub fn ok(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.ok)
    }

    /// Failed checks.
    pub fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| !c.ok)
    }

    /// The Markdown table for the job summary.
    pub fn markdown(&self) -> String {
        let cell = |s: &str| s.replace('|', "\\|").replace('\n', " ");
        let mut s = format!(
            "### test-install: {}\n\n{}\n\n| Check | Result | Detail |\n|---|---|---|\n",
            if self.ok() { "passed" } else { "FAILED" },
            cell(&self.title)
        );
        for c in &self.checks {
            s.push_str(&format!(
                "| {} | {} | {} |\n",
                cell(&c.name),
                if c.ok { "✅ ok" } else { "❌ failed" },
                cell(&c.detail)
            ));
        }
        if self.checks.is_empty() {
            s.push_str("| (none) | ❌ failed | no checks ran |\n");
        }
        s
    }
}
