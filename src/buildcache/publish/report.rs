//! What a publish did (or would do): [`PublishReport`], its job summary and step outputs.

use std::fmt;
use std::time::Duration;

use anyhow::Result;

use crate::buildcache::index::MergeStats;
use crate::buildcache::layout::SpecId;
use crate::gha::Runner;
use crate::pgp::KeyFingerprint;
use crate::s3::progress::human_bytes;

/// What happens (or would happen) to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    /// The object is new at the destination.
    New,
    /// The object exists and is replaced.
    Update,
    /// The object is already as it should be; not written.
    Unchanged,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Change::New => "new",
            Change::Update => "update",
            Change::Unchanged => "unchanged",
        })
    }
}

/// One object write of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectChange {
    /// Destination key.
    pub key: String,
    /// What happens to it.
    pub change: Change,
    /// Its size in bytes.
    pub size: u64,
}

/// The outcome for one published spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecOutcome {
    /// The spec.
    pub id: SpecId,
    /// What happened to its (signed) manifest.
    pub manifest: Change,
    /// Blobs of this spec written (not already present).
    pub blobs_written: usize,
    /// Bytes written for this spec (blobs and manifest).
    pub bytes: u64,
}

/// The result of [`publish`].
#[derive(Debug, Clone, Default)]
pub struct PublishReport {
    /// Destination URL.
    pub url: String,
    /// The URL consumers read from (`spack mirror add`).
    pub public_url: String,
    /// Public fingerprint of the signing certificate, when the engine signed.
    pub fingerprint: Option<KeyFingerprint>,
    /// Per published spec.
    pub specs: Vec<SpecOutcome>,
    /// Specs in the source that the publish mode left out.
    pub skipped: Vec<SpecId>,
    /// Every object considered, in write order.
    pub objects: Vec<ObjectChange>,
    /// Index merge statistics.
    pub index: MergeStats,
    /// Total records in the merged index.
    pub index_records: usize,
    /// Objects written (or, in a dry run, that would be).
    pub objects_uploaded: u64,
    /// Bytes written (or that would be).
    pub bytes_uploaded: u64,
    /// Objects already at the destination as they should be.
    pub objects_skipped: u64,
    /// Bytes of those.
    pub bytes_skipped: u64,
    /// Blobs written.
    pub blobs_uploaded: u64,
    /// Spec manifests published.
    pub specs_published: u64,
    /// Whether the index manifest was (or would be) rewritten.
    pub index_written: bool,
    /// Read-merge-write cycles the index took.
    pub index_attempts: u32,
    /// How concurrent publishers were kept apart (`conditional` or `lock`).
    pub write_mode: Option<String>,
    /// Wall time.
    pub elapsed: Duration,
    /// Whether nothing was written.
    pub dry_run: bool,
}

impl PublishReport {
    /// Upload throughput in bytes per second.
    pub fn throughput(&self) -> f64 {
        self.bytes_uploaded as f64 / self.elapsed.as_secs_f64().max(1e-3)
    }

    /// Objects written (or that would be).
    pub fn objects_written(&self) -> usize {
        self.objects_uploaded as usize
    }

    /// A Markdown job summary: per spec, and the totals.
    pub fn summary_markdown(&self) -> String {
        let mut s = format!(
            "### Sign and upload{}\n\nBuildcache `{}`{}.\n\n",
            if self.dry_run {
                " (dry run: nothing written)"
            } else {
                ""
            },
            self.url,
            match &self.fingerprint {
                Some(f) => format!(", signed by `{f}`"),
                None => String::new(),
            }
        );
        if !self.specs.is_empty() {
            s.push_str("| Spec | Manifest | Blobs written | Bytes |\n|---|---|---:|---:|\n");
            for sp in &self.specs {
                s.push_str(&format!(
                    "| `{}` | {} | {} | {} |\n",
                    sp.id, sp.manifest, sp.blobs_written, sp.bytes
                ));
            }
            s.push('\n');
        }
        let verb = if self.dry_run {
            "would upload"
        } else {
            "uploaded"
        };
        s.push_str(&format!(
            "| | objects | bytes |\n|---|---:|---:|\n| {verb} | {} | {} |\n| skipped (already there) | {} | {} |\n\n",
            self.objects_uploaded,
            human_bytes(self.bytes_uploaded),
            self.objects_skipped,
            human_bytes(self.bytes_skipped),
        ));
        s.push_str(&format!(
            "{} specs, index {} ({} records: {} added, {} updated, {} kept; {} attempt(s), {}), {:.1} s, {}/s\n",
            self.specs_published,
            if self.index_written {
                if self.dry_run { "would be updated" } else { "updated" }
            } else {
                "unchanged"
            },
            self.index_records,
            self.index.added.len(),
            self.index.updated.len(),
            self.index.kept,
            self.index_attempts,
            self.write_mode.as_deref().unwrap_or("-"),
            self.elapsed.as_secs_f64(),
            human_bytes(self.throughput() as u64),
        ));
        if !self.skipped.is_empty() {
            s.push_str(&format!(
                "\nNot published (publish mode): {}\n",
                self.skipped
                    .iter()
                    .map(|i| format!("`{i}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        s
    }
}

/// Writes the step outputs of a publish (`buildcache-url`, `specs-published`,
/// `bytes-uploaded`) and its job-summary section.
pub fn write_outputs(runner: &Runner, report: &PublishReport) -> Result<()> {
    let bytes = if report.dry_run {
        0
    } else {
        report.bytes_uploaded
    };
    runner.set_outputs(&[
        ("buildcache-url", report.public_url.as_str()),
        ("specs-published", &report.specs_published.to_string()),
        ("bytes-uploaded", &bytes.to_string()),
    ])?;
    runner.append_summary(&format!(
        "{}\nConsumers: `spack mirror add <name> {}`\n",
        report.summary_markdown(),
        report.public_url
    ))
}
