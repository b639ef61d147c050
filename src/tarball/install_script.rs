//! What goes into `data/` besides the manifest: `install.sh` (POSIX sh, shellcheck-clean; it
//! replaces the placeholder in the files `relocate-text.txt` lists, idempotently) and the
//! `slurm.conf`/`cgroup.conf` templates of the Slurm release.
//!
//! Slurm compiles its prefix, `SBINDIR` and default PluginDir in at build time; `install.sh`
//! rewrites them where the tarball is unpacked ([`super::prefixes`]), so commands and daemons
//! find their plugins and `slurmstepd` without any setting. The template still names
//! `PluginDir=<view>/lib/slurm` (the placeholder the install script resolves) so a copied
//! slurm.conf says where the plugins are. slurm.conf itself is found through `SLURM_CONF` (the
//! module sets it; default `/etc/slurm/slurm.conf`).

use crate::catalog::SlurmVersion;

/// The install script.
pub(crate) const INSTALL_SH: &str = include_str!("templates/install.sh");
const SLURM_CONF: &str = include_str!("templates/slurm.conf");
const CGROUP_CONF: &str = include_str!("templates/cgroup.conf");

/// The cgroup settings that differ between Slurm releases.
fn cgroup_for(slurm: &SlurmVersion) -> (&'static str, &'static str) {
    let (major, minor) = slurm
        .as_str()
        .split_once('.')
        .and_then(|(a, b)| Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?)))
        .unwrap_or((0, 0));
    if (major, minor) < (24, 5) {
        (
            "autodetect",
            "Slurm 23.x: cgroup v1 or v2 is detected; do not add the obsolete CgroupAutomount.",
        )
    } else {
        (
            "autodetect",
            "Slurm 24.05 and later: cgroup v2 is detected; IgnoreSystemd=yes only without systemd.",
        )
    }
}

/// `slurm.conf` for `slurm`, with the placeholder in `PluginDir`.
pub(crate) fn slurm_conf(slurm: &SlurmVersion) -> String {
    SLURM_CONF.replace("{{slurm_version}}", slurm.as_str())
}

/// `cgroup.conf` for `slurm`.
pub(crate) fn cgroup_conf(slurm: &SlurmVersion) -> String {
    let (plugin, note) = cgroup_for(slurm);
    CGROUP_CONF
        .replace("{{slurm_version}}", slurm.as_str())
        .replace("{{cgroup_plugin}}", plugin)
        .replace("{{cgroup_note}}", note)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_render() {
        for v in ["23.11", "24.11", "25.11", "26.05"] {
            let v: SlurmVersion = v.parse().unwrap();
            let s = slurm_conf(&v);
            let c = cgroup_conf(&v);
            assert!(!s.contains("{{") && !c.contains("{{"));
            assert!(s.contains("PluginDir=@SLURM_FACTORY_PREFIX@/lib/slurm"));
            assert!(c.contains("CgroupPlugin=autodetect"));
        }
    }
}
