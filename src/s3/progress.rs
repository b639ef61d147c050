//! Upload progress: periodic lines inside a `::group::` in Actions (and on non-terminals), an
//! indicatif bar on a terminal, nothing when quiet.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::gha::Runner;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProgressMode {
    /// A bar on a terminal, periodic lines otherwise (Actions, pipes).
    #[default]
    Auto,
    /// Periodic lines only.
    Lines,
    /// Nothing.
    Quiet,
}

/// Shared counters of an upload.
#[derive(Debug, Default)]
pub struct Counters {
    /// Objects uploaded.
    pub objects: AtomicU64,
    /// Bytes uploaded.
    pub bytes: AtomicU64,
}

/// A running progress display; stop it with [`Progress::finish`].
pub struct Progress {
    counters: Arc<Counters>,
    bar: Option<indicatif::ProgressBar>,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    /// Starts showing progress towards `total_objects` / `total_bytes`.
    pub fn start(
        runner: &Runner,
        mode: ProgressMode,
        interval: Duration,
        total_objects: u64,
        total_bytes: u64,
    ) -> Self {
        let counters = Arc::new(Counters::default());
        let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let use_bar = mode == ProgressMode::Auto && tty && !runner.in_actions();
        let mut bar = None;
        let mut ticker = None;
        if mode != ProgressMode::Quiet && use_bar {
            let b = indicatif::ProgressBar::new(total_bytes);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {binary_bytes_per_sec} {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b.enable_steady_tick(Duration::from_millis(200));
            let c = counters.clone();
            let b2 = b.clone();
            ticker = Some(tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    b2.set_position(c.bytes.load(Ordering::Relaxed));
                    b2.set_message(format!(
                        "{}/{total_objects} objects",
                        c.objects.load(Ordering::Relaxed)
                    ));
                }
            }));
            bar = Some(b);
        } else if mode != ProgressMode::Quiet {
            let c = counters.clone();
            let r = runner.clone();
            ticker = Some(tokio::spawn(async move {
                let t0 = Instant::now();
                loop {
                    tokio::time::sleep(interval).await;
                    let bytes = c.bytes.load(Ordering::Relaxed);
                    let secs = t0.elapsed().as_secs_f64().max(0.001);
                    r.info(&format!(
                        "  {}/{total_objects} objects, {} / {} ({}/s)",
                        c.objects.load(Ordering::Relaxed),
                        human_bytes(bytes),
                        human_bytes(total_bytes),
                        human_bytes((bytes as f64 / secs) as u64)
                    ));
                }
            }));
        }
        Progress {
            counters,
            bar,
            ticker,
        }
    }

    /// The counters to update.
    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }

    /// Stops the display.
    pub fn finish(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(t) = self.ticker.take() {
            t.abort();
        }
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `1.5 MiB`-style sizes.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_human() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }
}
