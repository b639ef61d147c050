//! Upload benchmark: a synthetic Spack v3 buildcache (about 2,000 blobs from 1 KiB to
//! 64 MiB, about 1 GiB) published to a loopback S3-compatible server, timed next to
//! `aws s3 sync` (awscli from the test venv) on the same data in the same run, plus a no-change
//! re-run of each.
//!
//! Two real S3-compatible servers on loopback, each tool on its own fresh instance in every
//! round:
//! - `moto_server` (Python, in memory; a single process under the GIL, so it bounds both
//!   clients), and
//! - `s3s-fs` (Rust, the s3s project's file-system backed S3 server, its data directory on
//!   tmpfs so the disk's write-back does not decide the result), when installed with
//!   `SLURM_FACTORY_BENCH_TOOLS=1 scripts/install-test-deps.sh` (into `.tools/bin`; skipped
//!   with a note otherwise). It is fast enough that the clients, not the server, dominate.
//!
//! Every server runs `UPLOAD_BENCH_ROUNDS` rounds (default 3); the order of the two tools
//! alternates between rounds, and the tables give each round, the median and the worst
//! speed-up. A goal counts as met only when it holds in every round.
//!
//! Run with `SLURM_FACTORY_VENV=/path/to/.venv cargo bench --bench upload`
//! (`UPLOAD_BENCH_SCALE=0.1` for a quick run on a tenth of the data,
//! `UPLOAD_BENCH_SERVERS=s3s-fs` to measure on one server only).

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/s3/harness.rs"]
mod harness;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use harness::*;
use slurm_factory::buildcache::publish::PublishReport;
use slurm_factory::s3::progress::{ProgressMode, human_bytes};

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

    /// CPU time the server process has used so far.
    fn cpu(&self) -> Duration {
        let pid = match self {
            Server::Moto(m) => m.pid().expect("moto_server runs"),
            Server::S3sFs { child, .. } => child.id(),
        };
        cpu_of(&pid.to_string()).0
    }
}

/// Clock ticks per second of the times in `/proc/<pid>/stat`.
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// (own CPU time, CPU time of waited-for children) of `/proc/<pid>/stat` (`pid` may be
/// `self`): utime + stime, and cutime + cstime.
fn cpu_of(pid: &str) -> (Duration, Duration) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc stat");
    // Fields after the command name (which may hold spaces) start at field 3, `state`.
    let rest: Vec<u64> = stat
        .rsplit_once(") ")
        .expect("/proc stat format")
        .1
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let secs = |ticks: u64| Duration::from_secs_f64(ticks as f64 / clock_ticks());
    // rest[0] is field 4 (ppid): utime is field 14, stime 15, cutime 16, cstime 17.
    (secs(rest[10] + rest[11]), secs(rest[12] + rest[13]))
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

/// A directory for s3s-fs's objects: on tmpfs (`/dev/shm`) when there is one, so the server
/// stores in memory like moto does and the disk's write-back does not add seconds at random.
fn server_data_dir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(d) = tempfile::Builder::new()
            .prefix("slurm-factory-bench-")
            .tempdir_in(shm)
    {
        return d;
    }
    tempfile::tempdir().unwrap()
}

async fn start(kind: &str) -> Server {
    match kind {
        "moto" => Server::Moto(Moto::start().await.expect("moto_server")),
        _ => {
            let data = server_data_dir();
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

fn env_u64(k: &str) -> Option<u64> {
    std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok())
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
    let rounds = env_u64("UPLOAD_BENCH_ROUNDS").unwrap_or(3).max(1) as usize;
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
    let d = PublishOptions::default();
    let opts = PublishOptions {
        require_signed: false,
        progress: ProgressMode::Quiet,
        concurrency: env_u64("UPLOAD_BENCH_CONCURRENCY").map_or(d.concurrency, |v| v as usize),
        multipart_threshold: env_u64("UPLOAD_BENCH_THRESHOLD_MIB")
            .map_or(d.multipart_threshold, |v| v << 20),
        part_size: env_u64("UPLOAD_BENCH_PART_MIB").map_or(d.part_size, |v| v << 20),
        ..d
    };
    println!(
        "slurm-factory: {} requests in flight, multipart from {} in {} parts; {rounds} round(s) per server",
        opts.concurrency,
        human_bytes(opts.multipart_threshold),
        human_bytes(opts.part_size)
    );
    let mut servers = vec!["moto"];
    if s3s_fs_bin().is_some() {
        servers.push("s3s-fs");
    } else {
        println!(
            "note: s3s-fs not installed (SLURM_FACTORY_BENCH_TOOLS=1 scripts/install-test-deps.sh); measuring on moto only"
        );
    }
    // `UPLOAD_BENCH_SERVERS=s3s-fs` (comma-separated) measures on those servers only.
    if let Ok(only) = std::env::var("UPLOAD_BENCH_SERVERS") {
        let want: Vec<&str> = only.split(',').map(str::trim).collect();
        for w in &want {
            assert!(
                ["moto", "s3s-fs"].contains(w),
                "UPLOAD_BENCH_SERVERS: unknown server {w:?} (moto, s3s-fs)"
            );
        }
        servers.retain(|s| want.contains(s));
        assert!(
            !servers.is_empty(),
            "UPLOAD_BENCH_SERVERS={only}: none of these servers is installed"
        );
    }
    let bench = Bench {
        aws_bin: &aws_bin,
        root: s.root.to_str().unwrap(),
        synth: &s,
        specs: sizes.len(),
        blobs,
        bytes,
        opts: &opts,
    };
    for kind in servers {
        bench.on(kind, rounds).await;
    }
}

/// One tool's run on its own server: the wall times of the first upload and of the
/// no-change re-run, and the CPU time the server and the client used for the first upload.
#[derive(Debug, Clone, Copy, Default)]
struct Run {
    first: Duration,
    again: Duration,
    server_cpu: Duration,
    client_cpu: Duration,
}

/// The median of each figure of `runs` (not empty).
fn median_run(runs: &[Run]) -> Run {
    let median = |f: fn(&Run) -> Duration| {
        let mut v: Vec<Duration> = runs.iter().map(f).collect();
        v.sort();
        v[v.len() / 2]
    };
    Run {
        first: median(|r| r.first),
        again: median(|r| r.again),
        server_cpu: median(|r| r.server_cpu),
        client_cpu: median(|r| r.client_cpu),
    }
}

/// One round: both tools.
#[derive(Debug, Clone, Copy)]
struct Round {
    sync: Run,
    ours: Run,
}

impl Round {
    fn speedup(&self) -> f64 {
        self.sync.first.as_secs_f64() / self.ours.first.as_secs_f64()
    }
}

struct Bench<'a> {
    aws_bin: &'a std::path::Path,
    root: &'a str,
    synth: &'a Synth,
    specs: usize,
    blobs: usize,
    bytes: u64,
    opts: &'a PublishOptions,
}

impl Bench<'_> {
    /// `aws s3 sync` on its own fresh server: first upload, then a no-change re-run.
    async fn sync(&self, kind: &str) -> Run {
        let server = start(kind).await;
        create_bucket(&client(server.endpoint()).await).await;
        let dest = format!("s3://{BUCKET}/sync");
        let (server0, children0) = (server.cpu(), cpu_of("self").1);
        let first = aws(
            self.aws_bin,
            server.endpoint(),
            &["s3", "sync", self.root, &dest],
        );
        // `aws` has been waited for, so its CPU time is in our children's.
        let (server_cpu, client_cpu) = (server.cpu() - server0, cpu_of("self").1 - children0);
        let again = aws(
            self.aws_bin,
            server.endpoint(),
            &["s3", "sync", self.root, &dest],
        );
        Run {
            first,
            again,
            server_cpu,
            client_cpu,
        }
    }

    /// slurm-factory on its own fresh server: first upload, then a no-change re-run, then a
    /// full consistency check of what it published.
    async fn ours(&self, kind: &str) -> (Run, PublishReport) {
        let server = start(kind).await;
        let c = client(server.endpoint()).await;
        create_bucket(&c).await;
        let url = url("ours");
        let (server0, self0) = (server.cpu(), cpu_of("self").0);
        let t = Instant::now();
        let r = publish_buildcache(&quiet_runner(), &c, &url, &self.synth.root, self.opts)
            .await
            .unwrap();
        let first = t.elapsed();
        let (server_cpu, client_cpu) = (server.cpu() - server0, cpu_of("self").0 - self0);
        assert_eq!(r.blobs_uploaded as usize, self.blobs);
        let t = Instant::now();
        let r2 = publish_buildcache(&quiet_runner(), &c, &url, &self.synth.root, self.opts)
            .await
            .unwrap();
        let again = t.elapsed();
        assert_eq!(
            r2.objects_uploaded, 0,
            "a no-change re-run uploaded objects"
        );
        assert_eq!(check_consistent(&c, &url).await, Ok(self.specs));
        let run = Run {
            first,
            again,
            server_cpu,
            client_cpu,
        };
        (run, r)
    }

    async fn on(&self, kind: &str, rounds: usize) {
        println!("\n## server: {kind}\n");
        let skip_sync = std::env::var_os("UPLOAD_BENCH_SKIP_SYNC").is_some();
        let mut results = Vec::new();
        let mut last_report = None;
        for i in 0..rounds {
            // Alternate which tool goes first, so neither always gets the warmer machine.
            let (sync, (ours, report)) = if skip_sync {
                let skipped = Run {
                    first: Duration::from_secs(1),
                    again: Duration::from_secs(1),
                    ..Run::default()
                };
                (skipped, self.ours(kind).await)
            } else if i % 2 == 0 {
                let s = self.sync(kind).await;
                (s, self.ours(kind).await)
            } else {
                let o = self.ours(kind).await;
                (self.sync(kind).await, o)
            };
            let r = Round { sync, ours };
            eprintln!(
                "{kind} round {}: aws s3 sync {:.2} s, slurm-factory {:.2} s ({:.2}×)",
                i + 1,
                r.sync.first.as_secs_f64(),
                r.ours.first.as_secs_f64(),
                r.speedup()
            );
            results.push(r);
            last_report = Some(report);
        }
        self.print(kind, &results);
        if let Some(report) = last_report {
            println!(
                "slurm-factory first upload: {} objects, {} ({} index attempt(s), index write mode {:?})",
                report.objects_uploaded,
                human_bytes(report.bytes_uploaded),
                report.index_attempts,
                report.write_mode
            );
        }
    }

    fn print(&self, kind: &str, results: &[Round]) {
        let mbps = |d: Duration| self.bytes as f64 / d.as_secs_f64() / (1024.0 * 1024.0);
        let secs = |d: Duration| d.as_secs_f64();
        println!(
            "| round ({kind}) | `aws s3 sync` first upload | ours first upload | speed-up | `aws s3 sync` no-change | ours no-change |"
        );
        println!("|---|---:|---:|---:|---:|---:|");
        let row = |label: &str, r: &Round| {
            println!(
                "| {label} | {:.2} s ({:.0} MiB/s) | {:.2} s ({:.0} MiB/s) | {:.2}× | {:.2} s | {:.2} s |",
                secs(r.sync.first),
                mbps(r.sync.first),
                secs(r.ours.first),
                mbps(r.ours.first),
                r.speedup(),
                secs(r.sync.again),
                secs(r.ours.again)
            )
        };
        for (i, r) in results.iter().enumerate() {
            row(&(i + 1).to_string(), r);
        }
        let m = Round {
            sync: median_run(&results.iter().map(|r| r.sync).collect::<Vec<_>>()),
            ours: median_run(&results.iter().map(|r| r.ours).collect::<Vec<_>>()),
        };
        row("median", &m);
        println!();
        println!(
            "CPU time during the first upload ({kind}; 2 cores = 2 CPU-seconds per second), medians:"
        );
        println!();
        println!("| tool | wall | server CPU | server busy | client CPU |");
        println!("|---|---:|---:|---:|---:|");
        for (tool, run) in [("`aws s3 sync`", m.sync), ("slurm-factory", m.ours)] {
            println!(
                "| {tool} | {:.2} s | {:.2} s | {:.0} % of a core | {:.2} s |",
                secs(run.first),
                secs(run.server_cpu),
                100.0 * secs(run.server_cpu) / secs(run.first),
                secs(run.client_cpu)
            );
        }
        let worst = results
            .iter()
            .map(Round::speedup)
            .fold(f64::INFINITY, f64::min);
        let slowest_rerun = results.iter().map(|r| r.ours.again).max().unwrap();
        println!();
        println!(
            "goals on {kind}: ≥ 2× faster than aws s3 sync on the first upload in every round: {} (worst {worst:.2}×, median of the times {:.2}×); no-change re-run < 2 s in every round: {} (slowest {:.2} s)",
            if worst >= 2.0 { "met" } else { "NOT met" },
            m.speedup(),
            if slowest_rerun < Duration::from_secs(2) {
                "met"
            } else {
                "NOT met"
            },
            secs(slowest_rerun)
        );
    }
}
