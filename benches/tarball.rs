//! Tarball benchmark: packs a synthetic Slurm view of about 1 GiB (20,000 small files plus a
//! few large shared objects, compressible about like real ones) with `tarball::pack` and times
//! it next to GNU `tar -czf` (tar + gzip) and `tar -I pigz -cf` on the same tree, in the same
//! run, every tool reading from a warm page cache.
//!
//! Each tool runs `TARBALL_BENCH_ROUNDS` rounds (default 3), in an order that rotates between
//! rounds; the table gives the median and every round. Goals: at least 1.8× faster than
//! `tar -czf` on 2 cores, and on par with pigz (within 15 %) at a comparable ratio (within 2 %
//! of gzip's size).
//!
//! Run with `cargo bench --bench tarball` (pigz: `SLURM_FACTORY_BENCH_TOOLS=1
//! scripts/install-test-deps.sh`); `TARBALL_BENCH_SCALE=0.1` packs a tenth of the data.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use slurm_factory::tarball::{PackOptions, pack};

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

/// Deterministic pseudo-random numbers (xorshift), so every run packs the same bytes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Machine-code-like bytes: short tokens from a skewed vocabulary of random byte strings,
/// with literal noise and occasional string-table runs. gzip -6 takes it to about 40 %.
fn binary_like(rng: &mut Rng, vocab: &[Vec<u8>], len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 64);
    while out.len() < len {
        match rng.below(10) {
            0..=5 => {
                let i = rng.below(vocab.len()).min(rng.below(vocab.len()));
                out.extend_from_slice(&vocab[i]);
            }
            6..=8 => {
                for _ in 0..4 {
                    out.push(rng.next() as u8);
                }
            }
            _ => out.extend_from_slice(b"slurm_conf_get_value\0_init\0plugin_fini\0"),
        }
    }
    out.truncate(len);
    out
}

/// Text-like bytes (configs, scripts, man pages): words and line breaks; about 30 % with gzip.
fn text_like(rng: &mut Rng, words: &[String], len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 32);
    while out.len() < len {
        let i = rng.below(words.len()).min(rng.below(words.len()));
        out.extend_from_slice(words[i].as_bytes());
        out.push(if rng.below(9) == 0 { b'\n' } else { b' ' });
    }
    out.truncate(len);
    out
}

fn write_view(root: &Path, scale: f64) -> (usize, u64) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let vocab: Vec<Vec<u8>> = (0..4096)
        .map(|_| (0..2 + rng.below(10)).map(|_| rng.next() as u8).collect())
        .collect();
    let words: Vec<String> = (0..3000)
        .map(|_| {
            (0..2 + rng.below(9))
                .map(|_| (b'a' + rng.below(26) as u8) as char)
                .collect()
        })
        .collect();
    let mut files = 0;
    let mut bytes = 0u64;
    let mut put = |rel: &str, data: &[u8], exec: bool| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, data).unwrap();
        if exec {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        files += 1;
        bytes += data.len() as u64;
    };
    put("bin/sinfo", &binary_like(&mut rng, &vocab, 300 * KIB), true);
    let large_size = ((128 * MIB) as f64 * scale) as usize;
    for i in 0..4 {
        put(
            &format!("lib/libbig{i}.so.1"),
            &binary_like(&mut rng, &vocab, large_size),
            true,
        );
    }
    let small = ((20_000.0 * scale).round() as usize).max(10);
    for i in 0..small {
        let dir = [
            "share/man/man1",
            "lib/slurm",
            "share/openmpi",
            "etc",
            "libexec/x",
            "share/lua",
        ][i % 6];
        let len = KIB + rng.below(48 * KIB);
        if i % 3 == 0 {
            put(
                &format!("{dir}/d{}/f{i}.so", i % 97),
                &binary_like(&mut rng, &vocab, len),
                true,
            );
        } else {
            put(
                &format!("{dir}/d{}/f{i}.txt", i % 97),
                &text_like(&mut rng, &words, len),
                false,
            );
        }
    }
    (files, bytes)
}

fn time(f: impl FnOnce()) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

fn shell(cmd: &mut Command) {
    let st = cmd.status().unwrap();
    assert!(st.success(), "{cmd:?} failed");
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let scale: f64 = std::env::var("TARBALL_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let rounds: usize = std::env::var("TARBALL_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let have_pigz = Command::new("pigz")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let work = tempfile::tempdir().unwrap();
    let ns = work.path().join("ns");
    let view = ns.join("view");
    let t = Instant::now();
    let (files, bytes) = write_view(&view, scale);
    eprintln!(
        "synthetic view: {files} files, {} MiB, written in {:.1?}",
        bytes / MIB as u64,
        t.elapsed()
    );
    // Warm the page cache for every tool alike.
    shell(
        Command::new("tar")
            .arg("-cf")
            .arg("/dev/null")
            .arg("-C")
            .arg(&ns)
            .arg("view"),
    );
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();

    let out = work.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let tools: Vec<&str> = if have_pigz {
        vec!["slurm-factory", "tar -czf", "tar -I pigz -cf"]
    } else {
        vec!["slurm-factory", "tar -czf"]
    };
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); tools.len()];
    let mut sizes = vec![0u64; tools.len()];
    for round in 0..rounds {
        for k in 0..tools.len() {
            let i = (k + round) % tools.len();
            let dest: PathBuf = out.join(format!("{i}.tar.gz"));
            let _ = std::fs::remove_file(&dest);
            let d = match tools[i] {
                "slurm-factory" => {
                    let opts = PackOptions {
                        view: view.clone(),
                        modules: None,
                        spack_lock: None,
                        install_root: "/slurm-factory/bench/install".into(),
                        view_root: Some("/slurm-factory/bench/view".into()),
                        relocator: None,
                        slurm: "25.11".parse().unwrap(),
                        gcc: "13.4.0".parse().unwrap(),
                        output: out.join("ours"),
                        name: None,
                        source_date_epoch: 0,
                        level: 6,
                        threads: None,
                    };
                    let _ = std::fs::remove_dir_all(&opts.output);
                    let mut packed = None;
                    let d = time(|| packed = Some(pack(&opts).unwrap()));
                    std::fs::rename(&packed.unwrap().path, &dest).unwrap();
                    d
                }
                "tar -czf" => time(|| {
                    shell(
                        Command::new("tar")
                            .arg("-czf")
                            .arg(&dest)
                            .arg("-C")
                            .arg(&ns)
                            .arg("view"),
                    )
                }),
                _ => time(|| {
                    shell(
                        Command::new("tar")
                            .args(["-I", "pigz"])
                            .arg("-cf")
                            .arg(&dest)
                            .arg("-C")
                            .arg(&ns)
                            .arg("view"),
                    )
                }),
            };
            sizes[i] = std::fs::metadata(&dest).unwrap().len();
            times[i].push(d);
            eprintln!(
                "round {}: {:16} {:>8.2} s  {} bytes",
                round + 1,
                tools[i],
                d.as_secs_f64(),
                sizes[i]
            );
        }
    }
    let med: Vec<Duration> = times.iter().map(|t| median(t.clone())).collect();
    let mut report = String::new();
    report.push_str(&format!(
        "\n{files} files, {:.0} MiB; {cores} cores; load average before: {}\n\n| tool | median s | rounds s | size MiB | ratio | vs tar -czf |\n|---|---|---|---|---|---|\n",
        bytes as f64 / MIB as f64,
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    ));
    for i in 0..tools.len() {
        report.push_str(&format!(
            "| {} | {:.2} | {} | {:.1} | {:.3} | {:.2}× |\n",
            tools[i],
            med[i].as_secs_f64(),
            times[i]
                .iter()
                .map(|d| format!("{:.2}", d.as_secs_f64()))
                .collect::<Vec<_>>()
                .join(", "),
            sizes[i] as f64 / MIB as f64,
            sizes[i] as f64 / bytes as f64,
            med[1].as_secs_f64() / med[i].as_secs_f64()
        ));
    }
    let speedup = med[1].as_secs_f64() / med[0].as_secs_f64();
    let worst = times[1]
        .iter()
        .zip(&times[0])
        .map(|(g, o)| g.as_secs_f64() / o.as_secs_f64())
        .fold(f64::INFINITY, f64::min);
    report.push_str(&format!("\nspeed-up over tar -czf: median {speedup:.2}×, worst round {worst:.2}× (goal ≥ 1.8×: {})\n", if worst >= 1.8 { "met" } else { "NOT met" }));
    let ratio_diff = sizes[0] as f64 / sizes[1] as f64 - 1.0;
    report.push_str(&format!(
        "size vs gzip: {:+.2} % (goal within 2 %: {})\n",
        ratio_diff * 100.0,
        if ratio_diff.abs() <= 0.02 {
            "met"
        } else {
            "NOT met"
        }
    ));
    if have_pigz {
        let vs = med[2].as_secs_f64() / med[0].as_secs_f64();
        report.push_str(&format!(
            "vs pigz: {vs:.2}× pigz's speed (goal ≥ 0.85×: {})\n",
            if vs >= 0.85 { "met" } else { "NOT met" }
        ));
    } else {
        report.push_str(
            "pigz is not installed: run SLURM_FACTORY_BENCH_TOOLS=1 scripts/install-test-deps.sh\n",
        );
    }
    print!("{report}");
    std::io::stdout().flush().unwrap();
}
