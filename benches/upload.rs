//! Upload benchmark: a synthetic Spack v3 buildcache (about 2,000 blobs from 1 KiB to
//! 64 MiB, about 1 GiB) published to a loopback `moto_server`, timed next to `aws s3 sync`
//! (awscli from the test venv) on the same data in the same run, plus a no-change re-run of
//! each.
//!
//! Two real S3-compatible servers on loopback, each tool on its own fresh instance:
//! - `moto_server` (Python, in memory; single process, so it bounds both clients), and
//! - `s3s-fs` (Rust, the s3s project's file-system backed S3 server), when installed with
//!   `SLURM_FACTORY_BENCH_TOOLS=1 scripts/install-test-deps.sh` (into `.tools/bin`; skipped
//!   with a note otherwise). It is fast enough that the clients, not the server, dominate.
//!
//! Run with `SLURM_FACTORY_VENV=/path/to/.venv cargo bench --bench upload`
//! (`UPLOAD_BENCH_SCALE=0.1` for a quick run on a tenth of the data).

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/s3/harness.rs"]
mod harness;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use harness::*;
use slurm_factory::s3::progress::{ProgressMode, human_bytes};
use slurm_factory::s3::{PublishOptions, publish_buildcache};

/// Tarball sizes: a few large, more medium, many small, like a real Slurm+deps cache.
/// With the ~1–3 KiB spec blob per spec this gives 2,003 blobs and about 1 GiB.
fn tarball_sizes(scale: f64) -> Vec<usize> {
    const KIB: usize = 1024;
    const MIB: usize = 1024 * KIB;
    let mut sizes = Vec::new();
    let mut push = |n: usize, size: usize| {
        let n = ((n as f64) * scale).round().max(1.0) as usize;
        sizes.extend(std::iter::repeat_n(size, n));
    };
    push(4, 64 * MIB);
    push(12, 16 * MIB);
    push(40, 4 * MIB);
    push(200, MIB);
    push(344, 512 * KIB);
    push(400, 0); // placeholder for the small ones, resized below
    let small_start = sizes.len() - ((400.0 * scale).round().max(1.0) as usize);
    for (i, s) in sizes[small_start..].iter_mut().enumerate() {
        *s = KIB + (i * 997) % (64 * KIB);
    }
    sizes
}

fn aws(venv_aws: &std::path::Path, endpoint: &str, args: &[&str]) -> Duration {
    let t0 = Instant::now();
    let st = Command::new(venv_aws)
        .args(args)
        .args(["--endpoint-url", endpoint, "--only-show-errors"])
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .status()
        .expect("run aws");
    assert!(st.success(), "aws {args:?} failed");
    t0.elapsed()
}

/// A loopback S3-compatible server for one tool's run.
enum Server {
    Moto(Moto),
    S3sFs {
        child: Child,
        endpoint: String,
        _data: tempfile::TempDir,
    },
}

impl Server {
    fn endpoint(&self) -> &str {
        match self {
            Server::Moto(m) => &m.endpoint,
            Server::S3sFs { endpoint, .. } => endpoint,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Server::S3sFs { child, .. } = self {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `s3s-fs` from the repo-local `.tools/bin`, if installed.
fn s3s_fs_bin() -> Option<std::path::PathBuf> {
    let p = common::repo_root().join(".tools/bin/s3s-fs");
    p.is_file().then_some(p)
}

async fn start(kind: &str) -> Server {
    match kind {
        "moto" => Server::Moto(Moto::start().await.expect("moto_server")),
        _ => {
            let data = tempfile::tempdir().unwrap();
            let port = free_port();
            let child = Command::new(s3s_fs_bin().expect("s3s-fs"))
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .args(["--access-key", "testing", "--secret-key", "testing"])
                .arg(data.path())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start s3s-fs");
            let endpoint = format!("http://127.0.0.1:{port}");
            let t0 = Instant::now();
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(
                    t0.elapsed() < Duration::from_secs(20),
                    "s3s-fs did not start"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Server::S3sFs {
                child,
                endpoint,
                _data: data,
            }
        }
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

async fn run() {
    let Some(aws_bin) = common::require_tool("aws") else {
        return;
    };
    if common::require_tool("moto_server").is_none() {
        return;
    }
    let scale: f64 = std::env::var("UPLOAD_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let dir = tempfile::tempdir().unwrap();
    let t0 = Instant::now();
    let sizes = tarball_sizes(scale);
    let s = synth_cache(dir.path(), "bench", &sizes);
    let files = local_files(&s.root);
    let blobs = files.iter().filter(|f| f.starts_with("blobs/")).count();
    let bytes: u64 = files
        .iter()
        .map(|f| std::fs::metadata(s.root.join(f)).unwrap().len())
        .sum();
    println!(
        "synthetic buildcache: {} specs, {blobs} blobs, {} files, {} (generated in {:.1} s)",
        sizes.len(),
        files.len(),
        human_bytes(bytes),
        t0.elapsed().as_secs_f64()
    );
    let root = s.root.to_str().unwrap().to_owned();
    let mut servers = vec!["moto"];
    if s3s_fs_bin().is_some() {
        servers.push("s3s-fs");
    } else {
        println!(
            "note: s3s-fs not installed (SLURM_FACTORY_BENCH_TOOLS=1 scripts/install-test-deps.sh); measuring on moto only"
        );
    }
    for kind in servers {
        bench_on(kind, &aws_bin, &root, &s, &sizes, blobs, bytes).await;
    }
}

async fn bench_on(
    kind: &str,
    aws_bin: &std::path::Path,
    root: &str,
    s: &Synth,
    sizes: &[usize],
    blobs: usize,
    bytes: u64,
) {
    println!("\n## server: {kind}\n");
    // aws s3 sync on its own fresh server.
    let skip_sync = std::env::var_os("UPLOAD_BENCH_SKIP_SYNC").is_some();
    let (sync_first, sync_again) = if skip_sync {
        (Duration::from_secs(1), Duration::from_secs(1))
    } else {
        let server = start(kind).await;
        create_bucket(&client(server.endpoint()).await).await;
        let dest = format!("s3://{BUCKET}/sync");
        let first = aws(aws_bin, server.endpoint(), &["s3", "sync", root, &dest]);
        let again = aws(aws_bin, server.endpoint(), &["s3", "sync", root, &dest]);
        (first, again)
    };

    // slurm-factory on its own fresh server.
    let (ours_first, ours_again, report) = {
        let server = start(kind).await;
        let c = client(server.endpoint()).await;
        create_bucket(&c).await;
        let url = url("ours");
        let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
        let d = PublishOptions::default();
        let o = PublishOptions {
            require_signed: false,
            progress: ProgressMode::Quiet,
            concurrency: env("UPLOAD_BENCH_CONCURRENCY").map_or(d.concurrency, |v| v as usize),
            multipart_threshold: env("UPLOAD_BENCH_THRESHOLD_MIB")
                .map_or(d.multipart_threshold, |v| v << 20),
            part_size: env("UPLOAD_BENCH_PART_MIB").map_or(d.part_size, |v| v << 20),
            ..d
        };
        println!(
            "slurm-factory: concurrency {}, multipart ≥ {} in {} parts",
            o.concurrency,
            human_bytes(o.multipart_threshold),
            human_bytes(o.part_size)
        );
        let t = Instant::now();
        let r = publish_buildcache(&quiet_runner(), &c, &url, &s.root, &o)
            .await
            .unwrap();
        let first = t.elapsed();
        assert_eq!(r.blobs_uploaded as usize, blobs);
        let t = Instant::now();
        let r2 = publish_buildcache(&quiet_runner(), &c, &url, &s.root, &o)
            .await
            .unwrap();
        let again = t.elapsed();
        assert_eq!(r2.objects_uploaded, 0);
        assert_eq!(check_consistent(&c, &url).await, Ok(sizes.len()));
        (first, again, r)
    };

    let mbps = |d: Duration| bytes as f64 / d.as_secs_f64() / (1024.0 * 1024.0);
    println!();
    println!("| run ({kind}) | aws s3 sync | slurm-factory | speed-up |");
    println!("|---|---:|---:|---:|");
    println!(
        "| first upload | {:.2} s ({:.0} MiB/s) | {:.2} s ({:.0} MiB/s) | {:.2}× |",
        sync_first.as_secs_f64(),
        mbps(sync_first),
        ours_first.as_secs_f64(),
        mbps(ours_first),
        sync_first.as_secs_f64() / ours_first.as_secs_f64()
    );
    println!(
        "| no-change re-run | {:.2} s | {:.2} s | {:.2}× |",
        sync_again.as_secs_f64(),
        ours_again.as_secs_f64(),
        sync_again.as_secs_f64() / ours_again.as_secs_f64()
    );
    println!();
    println!(
        "slurm-factory first upload: {} objects, {} ({} index attempt(s), index write mode {:?})",
        report.objects_uploaded,
        human_bytes(report.bytes_uploaded),
        report.index_attempts,
        report.write_mode
    );
    let goal_first = sync_first.as_secs_f64() / ours_first.as_secs_f64() >= 2.0;
    let goal_rerun = ours_again < Duration::from_secs(2);
    println!(
        "goals on {kind}: ≥2× faster than aws s3 sync: {}; no-change re-run < 2 s: {}",
        if goal_first { "met" } else { "NOT met" },
        if goal_rerun { "met" } else { "NOT met" }
    );
}
