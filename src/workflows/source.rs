//! The typed model of `workflows-src/`: pipelines, composite actions and the pin table.
//!
//! Every struct denies unknown fields, so a typo in a source file is an error that names the
//! file and the field instead of a silently missing key in a generated workflow.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

/// A mapping that keeps the order of its source (workflow keys are read by people in order).
#[derive(Debug, Clone, PartialEq)]
pub struct Ordered<V>(pub Vec<(String, V)>);

impl<V> Default for Ordered<V> {
    fn default() -> Self {
        Ordered(Vec::new())
    }
}

impl<V> Ordered<V> {
    /// Whether the mapping is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Iterates over `(key, value)` in source order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &V)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&V> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Ordered<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V2<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for V2<V> {
            type Value = Ordered<V>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping")
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
                Ok(Ordered(Vec::new()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                let mut out: Vec<(String, V)> = Vec::new();
                while let Some((k, v)) = m.next_entry::<String, V>()? {
                    if out.iter().any(|(x, _)| *x == k) {
                        return Err(serde::de::Error::custom(format!("duplicate key {k:?}")));
                    }
                    out.push((k, v));
                }
                Ok(Ordered(out))
            }
        }
        d.deserialize_any(V2(PhantomData))
    }
}

/// `workflows-src/pins.yaml`: every third-party action and tool version the workflows use.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinTable {
    /// Actions by `owner/repo` (optionally `/path`), each pinned to a full commit SHA.
    pub actions: BTreeMap<String, Pin>,
    /// Versions of tools installed by the workflows (mdbook, cargo-llvm-cov, ...).
    #[serde(default)]
    pub tools: BTreeMap<String, String>,
}

/// One pinned third-party action.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Pin {
    /// The full 40-hex commit SHA the tag pointed to when pinned.
    pub sha: String,
    /// The release tag (`v4.2.2`), written as a comment after the SHA.
    pub version: String,
}

/// `workflows-src/workflows/<stem>.yaml`: one pipeline, rendered to `.github/workflows/<stem>.yml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowSource {
    /// The workflow's `name:`.
    pub name: String,
    /// What the pipeline does, written into the header comment.
    pub about: String,
    /// Triggers (`on:`), written as given.
    pub on: yaml_serde::Value,
    /// The workflow's concurrency group.
    pub concurrency: Concurrency,
    /// Workflow-level environment.
    #[serde(default)]
    pub env: Ordered<String>,
    /// The jobs, in order.
    pub jobs: Ordered<Job>,
}

/// A `concurrency:` block.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Concurrency {
    /// The group expression.
    pub group: String,
    /// Whether a new run cancels the one in progress.
    pub cancel_in_progress: bool,
}

/// The access level of a permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// `read`
    Read,
    /// `write`
    Write,
}

impl Access {
    /// The YAML word.
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write => "write",
        }
    }
}

/// One permission with the reason it is needed (written as a comment).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Permission {
    /// The access level.
    pub access: Access,
    /// Why the job needs it.
    pub why: String,
}

/// `runs-on:` as a label, a list of labels, or an expression.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RunsOn {
    /// One label or an expression.
    One(String),
    /// Several labels.
    Many(Vec<String>),
}

/// A job's deployment environment.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Environment {
    /// The environment name (`release`, `github-pages`).
    pub name: String,
    /// The URL shown on the deployment.
    #[serde(default)]
    pub url: Option<String>,
}

/// A job's `strategy:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Strategy {
    /// `fail-fast`.
    #[serde(default)]
    pub fail_fast: Option<bool>,
    /// `max-parallel`.
    #[serde(default)]
    pub max_parallel: Option<u32>,
    /// The matrix: an expression (`${{ fromJson(...) }}`) or a literal mapping.
    pub matrix: yaml_serde::Value,
}

/// One job.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Job {
    /// The job's display name.
    pub name: String,
    /// Comment lines written above the job.
    #[serde(default)]
    pub comment: Vec<String>,
    /// Jobs this one waits for.
    #[serde(default)]
    pub needs: Vec<String>,
    /// The job's condition.
    #[serde(default, rename = "if")]
    pub condition: Option<String>,
    /// Runner labels.
    pub runs_on: RunsOn,
    /// Timeout in minutes, or an expression.
    pub timeout_minutes: yaml_serde::Value,
    /// Deployment environment (publishing jobs use `release`).
    #[serde(default)]
    pub environment: Option<Environment>,
    /// The job's permissions; every entry says why.
    pub permissions: Ordered<Permission>,
    /// Job-level concurrency.
    #[serde(default)]
    pub concurrency: Option<Concurrency>,
    /// Matrix strategy.
    #[serde(default)]
    pub strategy: Option<Strategy>,
    /// Job outputs.
    #[serde(default)]
    pub outputs: Ordered<String>,
    /// Job-level environment.
    #[serde(default)]
    pub env: Ordered<String>,
    /// The steps.
    pub steps: Vec<Step>,
}

/// One step of a job.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Display name.
    pub name: String,
    /// Step id.
    #[serde(default)]
    pub id: Option<String>,
    /// Condition.
    #[serde(default, rename = "if")]
    pub condition: Option<String>,
    /// An action: `./actions/<name>` or a key of the pin table (no `@ref`: the table pins it).
    #[serde(default)]
    pub uses: Option<String>,
    /// The action's inputs.
    #[serde(default)]
    pub with: Ordered<yaml_serde::Value>,
    /// Step environment: the only way values reach a `run:` script.
    #[serde(default)]
    pub env: Ordered<String>,
    /// A shell script (no `${{ }}` allowed: pass values through `env`).
    #[serde(default)]
    pub run: Option<String>,
    /// The shell for `run`.
    #[serde(default)]
    pub shell: Option<String>,
    /// Working directory for `run`.
    #[serde(default)]
    pub working_directory: Option<String>,
    /// Step timeout in minutes.
    #[serde(default)]
    pub timeout_minutes: Option<u32>,
    /// Whether a failure of this step fails the job.
    #[serde(default)]
    pub continue_on_error: Option<bool>,
}

/// `workflows-src/actions/<name>.yaml`: one composite action, rendered to `actions/<name>/action.yml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionSource {
    /// The action's `name:`.
    pub name: String,
    /// The action's `description:` (one paragraph).
    pub description: String,
    /// The binary the action runs.
    pub binary: String,
    /// Fixed arguments before the inputs (e.g. the `notify` subcommand).
    #[serde(default)]
    pub args: Vec<String>,
    /// Marketplace branding.
    pub branding: Branding,
    /// Secret inputs: each reaches only the step that runs the binary, as the environment
    /// variable the binary reads (never `INPUT_<NAME>`, never the install step).
    #[serde(default)]
    pub secrets: Ordered<SecretInput>,
    /// Inputs; each reaches the binary as `INPUT_<NAME>`.
    #[serde(default)]
    pub inputs: Ordered<Input>,
    /// Outputs the binary writes to `$GITHUB_OUTPUT`; re-exported from the run step.
    #[serde(default)]
    pub outputs: Ordered<OutputDoc>,
}

/// Marketplace branding.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Branding {
    /// Feather icon name.
    pub icon: String,
    /// Badge colour.
    pub color: String,
}

/// One action input.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// What it means.
    pub description: String,
    /// Whether it must be given.
    #[serde(default)]
    pub required: bool,
    /// Its default.
    #[serde(default)]
    pub default: Option<String>,
}

/// One action output.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputDoc {
    /// What it holds.
    pub description: String,
}

/// One secret input of an action.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretInput {
    /// The environment variable the binary reads it from.
    pub env: String,
    /// What it holds.
    pub description: String,
}
