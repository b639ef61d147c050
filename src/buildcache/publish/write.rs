//! Step 5: the writes, in the order that keeps every reader consistent.

use std::sync::atomic::Ordering;

use anyhow::{Context, Result};
use futures::future::BoxFuture;

use super::keys::KeyPlan;
use super::plan::{Body, Pending, Plan};
use super::report::{ObjectChange, PublishReport};
use super::{Change, PublishOptions, bounded};
use crate::buildcache::index::{Index, KeyIndex, LOCK_KEY, update_pointer};
use crate::buildcache::layout::{self, SpecNode};
use crate::buildcache::read_index;
use crate::buildcache::storage::{PutOptions, Storage, WriteMode};
use crate::gha::Runner;
use crate::s3::progress::{Counters, Progress, human_bytes};

/// Writes the plan, so a reader never sees a manifest or an index that points at a missing
/// object: blobs, then manifests, then the key index (in one progress group), then, last, the
/// index, each pointer through the one compare-and-swap loop that merges again when another
/// publisher won. A dry run writes nothing and reports what would change.
pub(super) async fn write_plan(
    runner: &Runner,
    dest: &dyn Storage,
    opts: &PublishOptions,
    plan: &Plan,
    keys: &KeyPlan,
    published: &[Vec<SpecNode>],
    report: &mut PublishReport,
) -> Result<()> {
    let pending = plan.pending();
    let pending_blobs = plan.pending_blobs();
    let merge_keys = |k: &mut KeyIndex| keys.merge(k);
    // What the key index would be (for the plan and the progress totals).
    let key_plan = update_pointer::<KeyIndex>(dest, &merge_keys, 1, true).await?;
    let totals = Totals {
        objects: pending.len() as u64 + if key_plan.written { 2 } else { 0 },
        bytes: pending.iter().map(|p| p.size).sum(),
        blobs: pending_blobs,
    };
    runner.info(&format!(
        "{}: {} blob(s) and {} manifest(s) to {}write ({}), {} object(s) already there",
        dest.url(),
        pending_blobs,
        pending.len() as u64 - pending_blobs,
        if opts.dry_run { "(dry run) " } else { "" },
        human_bytes(totals.bytes),
        report.objects_skipped
    ));
    if opts.dry_run {
        return report_dry_run(dest, key_plan.written, &totals, published, report).await;
    }
    upload(runner, dest, opts, &pending, keys, &totals, report).await?;
    update_index(runner, dest, opts, published, report).await
}

/// What a publish writes, before the index.
struct Totals {
    objects: u64,
    bytes: u64,
    blobs: u64,
}

/// A dry run's report: what the writes and the index merge would be.
async fn report_dry_run(
    dest: &dyn Storage,
    key_index_written: bool,
    totals: &Totals,
    published: &[Vec<SpecNode>],
    report: &mut PublishReport,
) -> Result<()> {
    if !key_index_written {
        report.objects_skipped += 2;
    }
    let merge_index = |i: &mut Index| i.merge_published(published).map(|_| ());
    let index_plan = update_pointer::<Index>(dest, &merge_index, 1, true).await?;
    let mut stats_doc = read_index(dest).await?.map(|(i, _)| i).unwrap_or_default();
    report.index = stats_doc.merge_published(published)?;
    report.index_records = index_plan.doc.len();
    report.index_written = index_plan.written;
    report.objects_uploaded = totals.objects + if index_plan.written { 2 } else { 0 };
    report.bytes_uploaded = totals.bytes;
    report.blobs_uploaded = totals.blobs;
    for (k, w) in [
        (layout::KEY_INDEX_MANIFEST, key_index_written),
        (layout::INDEX_MANIFEST, index_plan.written),
    ] {
        report.objects.push(ObjectChange {
            key: k.into(),
            change: if w { Change::Update } else { Change::Unchanged },
            size: 0,
        });
    }
    Ok(())
}

/// Blobs, manifests and the key index, in one progress group.
async fn upload(
    runner: &Runner,
    dest: &dyn Storage,
    opts: &PublishOptions,
    pending: &[&Pending],
    keys: &KeyPlan,
    totals: &Totals,
    report: &mut PublishReport,
) -> Result<()> {
    let limit = dest.concurrency();
    let _group = runner.group(&format!("Uploading to {}", dest.url()));
    let progress = Progress::start(
        runner,
        opts.progress,
        opts.progress_interval,
        totals.objects,
        totals.bytes,
    );
    let counters = progress.counters();
    let (blob_writes, manifest_writes): (Vec<&Pending>, Vec<&Pending>) = pending
        .iter()
        .partition(|p| matches!(p.body, Body::File(_)) || p.key.starts_with("blobs/"));
    write_all(dest, &blob_writes, limit, &counters)
        .await
        .map_err(|e| {
            e.context(format!(
                "uploading blobs to {} failed; no manifest or index was changed. Re-run to upload what is missing",
                dest.url()
            ))
        })?;
    write_all(dest, &manifest_writes, limit, &counters)
        .await
        .map_err(|e| {
            e.context(format!(
                "uploading manifests to {} failed; the index was not changed. Re-run to finish",
                dest.url()
            ))
        })?;
    let merge_keys = |k: &mut KeyIndex| keys.merge(k);
    let keys = update_pointer::<KeyIndex>(dest, merge_keys, opts.index_attempts, false).await?;
    counters
        .objects
        .fetch_add(keys.objects_written, Ordering::Relaxed);
    counters
        .bytes
        .fetch_add(keys.bytes_written, Ordering::Relaxed);
    if !keys.written {
        report.objects_skipped += 2;
    }
    report.objects_uploaded = counters.objects.load(Ordering::Relaxed);
    report.bytes_uploaded = counters.bytes.load(Ordering::Relaxed);
    report.blobs_uploaded = totals.blobs + u64::from(keys.objects_written > 1);
    progress.finish();
    Ok(())
}

/// The index, last: merged with what another publisher wrote meanwhile.
async fn update_index(
    runner: &Runner,
    dest: &dyn Storage,
    opts: &PublishOptions,
    published: &[Vec<SpecNode>],
    report: &mut PublishReport,
) -> Result<()> {
    if dest.write_mode().await? == WriteMode::Lock {
        runner.warning(&format!(
            "{} does not support conditional writes; merging the index under a lease lock ({LOCK_KEY}). Run a final publish after concurrent jobs to be safe",
            dest.url(),
        ));
    }
    let mut stats_doc = read_index(dest).await?.map(|(i, _)| i).unwrap_or_default();
    let merge_index = |i: &mut Index| i.merge_published(published).map(|_| ());
    let idx = update_pointer::<Index>(dest, &merge_index, opts.index_attempts, false).await?;
    report.index = stats_doc.merge_published(published)?;
    report.index_records = idx.doc.len();
    report.index_written = idx.written;
    report.index_attempts = idx.attempts;
    report.write_mode = Some(idx.write_mode.to_string());
    report.objects_uploaded += idx.objects_written;
    report.bytes_uploaded += idx.bytes_written;
    report.blobs_uploaded += u64::from(idx.objects_written > 1);
    report.objects.push(ObjectChange {
        key: layout::INDEX_MANIFEST.into(),
        change: if idx.written {
            Change::Update
        } else {
            Change::Unchanged
        },
        size: 0,
    });
    Ok(())
}

async fn execute(dest: &dyn Storage, p: &Pending, counters: &Counters) -> Result<()> {
    if p.change == Change::Unchanged {
        return Ok(());
    }
    let opts = PutOptions::typed(p.content_type);
    match &p.body {
        Body::File(f) => dest.put_file(&p.key, f, opts).await,
        Body::Bytes(b) => dest.put(&p.key, b.clone(), opts).await,
    }
    .with_context(|| format!("cannot write {} to {}", p.key, dest.url()))?;
    counters.objects.fetch_add(1, Ordering::Relaxed);
    counters.bytes.fetch_add(p.size, Ordering::Relaxed);
    Ok(())
}

/// Writes `items` with at most `limit` in flight; every one is attempted even when one fails
/// (a re-run then has less to do), and the first error is returned.
async fn write_all(
    dest: &dyn Storage,
    items: &[&Pending],
    limit: usize,
    counters: &Counters,
) -> Result<()> {
    let futs: Vec<BoxFuture<'_, Result<()>>> = items
        .iter()
        .map(|p| Box::pin(execute(dest, p, counters)) as BoxFuture<'_, _>)
        .collect();
    bounded(futs, limit).await.into_iter().collect()
}
