//! What a build leg needs from its runner, and what this one has.

use std::path::Path;

/// Memory a leg needs: the runner requirement is 32 GB; the kernel reports a little less.
pub const LEG_MEMORY_BYTES: u64 = 30 * 1024 * 1024 * 1024;
/// Free disk a leg needs under its output directory (stages, install tree, view, buildcache and
/// caches of a GPU Slurm build, with headroom; the runner requirement is a 500 GB disk).
pub const LEG_DISK_BYTES: u64 = 200 * 1000 * 1000 * 1000;

/// Warnings for a runner below what a leg needs (`None`: could not be measured).
pub fn resource_warnings(memory: Option<u64>, disk_free: Option<u64>) -> Vec<String> {
    let gb = |b: u64| b as f64 / 1e9;
    let mut out = Vec::new();
    if let Some(m) = memory.filter(|m| *m < LEG_MEMORY_BYTES) {
        out.push(format!(
            "this runner has {:.1} GB of memory; a leg needs about {:.0} GB (runner requirement: 32 GB). Expect the build to fail or swap",
            gb(m),
            gb(LEG_MEMORY_BYTES)
        ));
    }
    if let Some(d) = disk_free.filter(|d| *d < LEG_DISK_BYTES) {
        out.push(format!(
            "only {:.1} GB are free under the output directory; a leg needs about {:.0} GB (runner requirement: a 500 GB disk). Free space or pass --output-dir on a larger disk",
            gb(d),
            gb(LEG_DISK_BYTES)
        ));
    }
    out
}

/// `MemTotal` of /proc/meminfo in bytes.
pub(crate) fn memory_total() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kb.checked_mul(1024)
}

/// Bytes available to unprivileged users on the file system of `dir` (or of its nearest
/// existing ancestor: the output directory is created later).
pub(crate) fn disk_free(dir: &Path) -> Option<u64> {
    let abs = std::path::absolute(dir).ok()?;
    let existing = abs.ancestors().find(|p| p.exists())?;
    let st = rustix::fs::statvfs(existing).ok()?;
    st.f_bavail.checked_mul(st.f_frsize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runners_below_a_legs_needs_get_a_warning_each() {
        assert!(resource_warnings(Some(LEG_MEMORY_BYTES), Some(LEG_DISK_BYTES)).is_empty());
        assert!(resource_warnings(None, None).is_empty());
        let w = resource_warnings(Some(8 << 30), Some(50_000_000_000));
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].contains("8.6 GB of memory"), "{}", w[0]);
        assert!(w[1].contains("only 50.0 GB are free"), "{}", w[1]);
        assert!(disk_free(Path::new("/definitely/not/here")).is_some());
        assert!(memory_total().is_some_and(|m| m > 0));
    }
}
