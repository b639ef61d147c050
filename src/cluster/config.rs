//! What the smoke cluster is made of: the installation's commands and plugins, the Slurm
//! version, this host's facts, free loopback ports, and the generated `slurm.conf`, auth key
//! and (for Slurm ≥ 24.05) `cgroup.conf`.

use std::fmt;
use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use rand::RngCore;

/// The Slurm commands and daemons the smoke test runs, all from one installation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installation {
    /// The installation prefix.
    pub prefix: PathBuf,
    /// `sbin/slurmctld`.
    pub slurmctld: PathBuf,
    /// `sbin/slurmd`.
    pub slurmd: PathBuf,
    /// `bin/sinfo`.
    pub sinfo: PathBuf,
    /// `bin/srun`.
    pub srun: PathBuf,
    /// `bin/sbatch`.
    pub sbatch: PathBuf,
    /// `bin/squeue`.
    pub squeue: PathBuf,
    /// `bin/scontrol`.
    pub scontrol: PathBuf,
    /// The plugin directory (`PluginDir`).
    pub plugin_dir: PathBuf,
}

/// Where installations keep Slurm's plugins, relative to the prefix: Spack and upstream
/// (`lib/slurm`), RPM-style (`lib64/slurm`) and Debian's multiarch packages.
const PLUGIN_DIRS: &[&str] = &[
    "lib/slurm",
    "lib64/slurm",
    "lib/x86_64-linux-gnu/slurm-wlm",
    "lib/aarch64-linux-gnu/slurm-wlm",
    "lib/x86_64-linux-gnu/slurm",
    "lib/aarch64-linux-gnu/slurm",
];

/// The plugins the generated configuration loads; a plugin directory without them is wrong.
/// None may be one a release lacks: Slurm 24.11 has no `task/none` (its `TaskPlugin` is unset by
/// default), so the smoke cluster uses `task/affinity`, which 22.05 and 24.11 both build (their
/// source trees have `src/plugins/task/affinity`). `tests/real_slurm.rs` checks this list against
/// real Spack builds of Slurm 22.05.8 and 24.11.5.
pub const REQUIRED_PLUGINS: &[&str] = &[
    "select_cons_tres.so",
    "proctrack_linuxproc.so",
    "task_affinity.so",
    "sched_backfill.so",
];

impl Installation {
    /// Finds the commands under `prefix/bin` and `prefix/sbin`, and the plugin directory (the
    /// first of the known layouts that holds Slurm's plugins). Every problem is reported at once.
    pub fn discover(prefix: &Path) -> Result<Installation> {
        if !prefix.is_dir() {
            bail!(
                "the installation prefix {} does not exist or is not a directory; pass the directory whose bin/ and sbin/ hold the Slurm commands (for example /usr, or where test-install installed)",
                prefix.display()
            );
        }
        let mut missing = Vec::new();
        let mut tool = |dir: &str, name: &str| {
            let p = prefix.join(dir).join(name);
            if !is_executable(&p) {
                missing.push(format!("{dir}/{name}"));
            }
            p
        };
        let slurmctld = tool("sbin", "slurmctld");
        let slurmd = tool("sbin", "slurmd");
        let sinfo = tool("bin", "sinfo");
        let srun = tool("bin", "srun");
        let sbatch = tool("bin", "sbatch");
        let squeue = tool("bin", "squeue");
        let scontrol = tool("bin", "scontrol");
        if !missing.is_empty() {
            bail!(
                "{} is not a complete Slurm installation: {} missing or not executable. The cluster smoke test needs the daemons (sbin/slurmctld, sbin/slurmd) and the client commands; install the full Slurm package (Debian: slurmctld, slurmd and slurm-client) into this prefix",
                prefix.display(),
                missing.join(", ")
            );
        }
        let plugin_dir = find_plugin_dir(prefix)?;
        Ok(Installation {
            prefix: prefix.to_owned(),
            slurmctld,
            slurmd,
            sinfo,
            srun,
            sbatch,
            squeue,
            scontrol,
            plugin_dir,
        })
    }
}

/// The Slurm installation in or below `prefix`: `prefix` itself (an existing install, `/usr`),
/// `prefix/view` (an unpacked tarball), or Spack's layout `prefix/<platform>-<target>/slurm-*`
/// (a buildcache install): the first whose `sbin/slurmctld` exists.
pub fn find_slurm_root(prefix: &Path) -> Result<PathBuf> {
    let mut candidates = vec![prefix.to_owned(), prefix.join("view")];
    let mut spack: Vec<PathBuf> = std::fs::read_dir(prefix)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|arch| arch.file_type().is_ok_and(|t| t.is_dir()))
        .flat_map(|arch| {
            std::fs::read_dir(arch.path())
                .into_iter()
                .flatten()
                .flatten()
        })
        .filter(|spec| spec.file_name().to_string_lossy().starts_with("slurm-"))
        .map(|spec| spec.path())
        .collect();
    spack.sort();
    candidates.extend(spack);
    candidates
        .into_iter()
        .find(|c| c.join("sbin/slurmctld").is_file())
        .with_context(|| {
            format!(
                "no Slurm installation in {}: no sbin/slurmctld there, in view/ or in a Spack slurm-* prefix below it. The cluster smoke test needs Slurm's daemons; pass the prefix Slurm was installed into",
                prefix.display()
            )
        })
}

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The first of [`PLUGIN_DIRS`] under `prefix` that holds every [`REQUIRED_PLUGINS`] file.
pub fn find_plugin_dir(prefix: &Path) -> Result<PathBuf> {
    let mut seen = Vec::new();
    for rel in PLUGIN_DIRS {
        let dir = prefix.join(rel);
        if !dir.is_dir() {
            continue;
        }
        let missing: Vec<&str> = REQUIRED_PLUGINS
            .iter()
            .copied()
            .filter(|p| !dir.join(p).is_file())
            .collect();
        if missing.is_empty() {
            return Ok(dir);
        }
        seen.push(format!("{} (lacks {})", dir.display(), missing.join(", ")));
    }
    let looked: Vec<String> = PLUGIN_DIRS
        .iter()
        .map(|r| prefix.join(r).display().to_string())
        .collect();
    if seen.is_empty() {
        bail!(
            "no Slurm plugin directory (PluginDir) in {}: looked for {}. Without plugins slurmctld cannot start; install Slurm's plugins with it (Debian: slurm-wlm-basic-plugins) or pass the prefix of a complete installation",
            prefix.display(),
            looked.join(", ")
        );
    }
    bail!(
        "no usable Slurm plugin directory (PluginDir) in {}: {}. The smoke cluster loads {}; install Slurm's plugins with it (Debian: slurm-wlm-basic-plugins) or pass the prefix of a complete installation",
        prefix.display(),
        seen.join("; "),
        REQUIRED_PLUGINS.join(", ")
    )
}

/// A Slurm release, as printed by `sinfo --version` (`slurm 23.11.4`, `slurm-wlm 22.05.8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct SlurmVersion {
    /// Year of the release (`23` in 23.11.4).
    pub major: u32,
    /// Month of the release (`11`).
    pub minor: u32,
    /// Maintenance release (`4`).
    pub patch: u32,
}

impl SlurmVersion {
    /// Parses the first line of `sinfo --version` / `slurmctld -V`: a word, a space, then
    /// `major.minor.patch` (a suffix after the patch, as in `23.11.0-0rc1`, is ignored).
    ///
    /// ```
    /// use slurm_factory::cluster::config::SlurmVersion;
    /// let v = SlurmVersion::parse("slurm-wlm 22.05.8\n").unwrap();
    /// assert_eq!((v.major, v.minor, v.patch), (22, 5, 8));
    /// assert!(SlurmVersion::parse("slurm 23.11.4").unwrap().has_auth_slurm());
    /// assert!(SlurmVersion::parse("sinfo: error: oops").is_err());
    /// ```
    pub fn parse(text: &str) -> Result<SlurmVersion> {
        let line = text.lines().next().unwrap_or("").trim();
        let parsed = line.split_once(' ').and_then(|(name, v)| {
            if !name.starts_with("slurm") {
                return None;
            }
            let mut parts = v.trim().splitn(3, '.');
            let major = parts.next()?.parse().ok()?;
            let minor = parts.next()?.parse().ok()?;
            let rest = parts.next()?;
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            let patch = digits.parse().ok()?;
            Some(SlurmVersion {
                major,
                minor,
                patch,
            })
        });
        parsed.with_context(|| {
            format!(
                "cannot read a Slurm version from {:?}; expected a line like `slurm 23.11.4`",
                line.chars().take(200).collect::<String>()
            )
        })
    }

    /// Whether this release has `auth/slurm` (Slurm ≥ 23.11), used instead of MUNGE.
    pub fn has_auth_slurm(self) -> bool {
        (self.major, self.minor) >= (23, 11)
    }

    /// Whether `cgroup.conf` accepts `CgroupPlugin=disabled` (Slurm ≥ 24.05).
    pub fn has_cgroup_disabled(self) -> bool {
        (self.major, self.minor) >= (24, 5)
    }
}

impl fmt::Display for SlurmVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}.{}", self.major, self.minor, self.patch)
    }
}

/// How the daemons authenticate each other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// `auth/slurm` + `cred/slurm` with `slurm.key` next to `slurm.conf` (Slurm ≥ 23.11).
    Slurm,
    /// `auth/munge` + `cred/munge` through our own `munged` listening on `socket`.
    Munge {
        /// The socket of the `munged` the smoke test starts.
        socket: PathBuf,
    },
}

impl Auth {
    /// The name shown in the report.
    pub fn name(&self) -> &'static str {
        match self {
            Auth::Slurm => "auth/slurm",
            Auth::Munge { .. } => "auth/munge",
        }
    }
}

/// This host, as the node of the smoke cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// The short host name (what `slurmd` registers as).
    pub name: String,
    /// CPUs usable here.
    pub cpus: usize,
    /// Memory in MiB declared for the node (below what the host has, so slurmd never finds
    /// less than configured).
    pub memory_mib: u64,
}

impl Host {
    /// Reads the host name (`uname`), the usable CPUs and `/proc/meminfo`.
    pub fn detect() -> Result<Host> {
        let uname = rustix::system::uname();
        let full = uname.nodename().to_string_lossy().into_owned();
        let name = full.split('.').next().unwrap_or_default().to_owned();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            bail!(
                "this host's name {full:?} cannot be a Slurm node name; give the host a plain name (letters, digits, '-')"
            );
        }
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let total_kib = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(1024 * 1024);
        // Half of the memory: slurmd reports less than MemTotal and the node must not drain.
        let memory_mib = (total_kib / 1024 / 2).max(1);
        Ok(Host {
            name,
            cpus,
            memory_mib,
        })
    }
}

/// Two distinct free loopback ports (controller, node daemon).
pub fn free_ports() -> Result<(u16, u16)> {
    let a = std::net::TcpListener::bind(("127.0.0.1", 0))
        .context("cannot bind a loopback port to find a free one")?;
    let b = std::net::TcpListener::bind(("127.0.0.1", 0))
        .context("cannot bind a loopback port to find a free one")?;
    Ok((a.local_addr()?.port(), b.local_addr()?.port()))
}

/// Everything `slurm.conf` is rendered from.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// The throwaway directory holding state, spool, pid and log files.
    pub dir: PathBuf,
    /// `PluginDir`.
    pub plugin_dir: PathBuf,
    /// The node.
    pub host: Host,
    /// `SlurmctldPort`.
    pub controller_port: u16,
    /// `SlurmdPort`.
    pub node_port: u16,
    /// How daemons authenticate.
    pub auth: Auth,
    /// `SlurmUser` and `SlurmdUser` (`root`, or the current user's uid when not root).
    pub user: String,
}

/// The partition of the smoke cluster.
pub const PARTITION: &str = "smoke";

impl ClusterConfig {
    /// `slurm.conf` path.
    pub fn conf_path(&self) -> PathBuf {
        self.dir.join("slurm.conf")
    }

    /// The directory daemon logs and pid files go to.
    pub fn log_dir(&self) -> PathBuf {
        self.dir.join("log")
    }

    /// `slurmctld`'s log file.
    pub fn slurmctld_log(&self) -> PathBuf {
        self.log_dir().join("slurmctld.log")
    }

    /// `slurmd`'s log file.
    pub fn slurmd_log(&self) -> PathBuf {
        self.log_dir().join("slurmd.log")
    }

    /// Renders `slurm.conf`. Paths are checked: Slurm's parser has no quoting, so a path with
    /// whitespace, `#` or `=` would be read as something else.
    pub fn render(&self) -> Result<String> {
        let d = &self.dir;
        for p in [d, &self.plugin_dir] {
            let s = p.to_string_lossy();
            if s.chars().any(|c| c.is_whitespace() || c == '#' || c == '=') || p.to_str().is_none()
            {
                bail!(
                    "{} cannot appear in slurm.conf (it has whitespace, '#', '=' or non-UTF-8 bytes, which Slurm's parser cannot quote); use a plainer path (set TMPDIR for the throwaway directory)",
                    p.display()
                );
            }
        }
        let d = d.display();
        let h = &self.host;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# Generated by slurm-factory's cluster smoke test (a throwaway single-host cluster)."
        );
        let _ = writeln!(s, "ClusterName=smoke");
        let _ = writeln!(s, "SlurmctldHost={}(127.0.0.1)", h.name);
        let _ = writeln!(s, "SlurmctldPort={}", self.controller_port);
        let _ = writeln!(s, "SlurmdPort={}", self.node_port);
        let _ = writeln!(s, "SlurmUser={}", self.user);
        let _ = writeln!(s, "SlurmdUser={}", self.user);
        match &self.auth {
            Auth::Slurm => {
                let _ = writeln!(s, "AuthType=auth/slurm");
                let _ = writeln!(s, "CredType=cred/slurm");
            }
            Auth::Munge { socket } => {
                let _ = writeln!(s, "AuthType=auth/munge");
                let _ = writeln!(s, "CredType=cred/munge");
                let _ = writeln!(s, "AuthInfo=socket={}", socket.display());
            }
        }
        let _ = writeln!(s, "PluginDir={}", self.plugin_dir.display());
        let _ = writeln!(s, "PlugStackConfig={d}/plugstack.conf");
        let _ = writeln!(s, "StateSaveLocation={d}/state");
        let _ = writeln!(s, "SlurmdSpoolDir={d}/spool");
        let _ = writeln!(s, "SlurmctldPidFile={d}/log/slurmctld.pid");
        let _ = writeln!(s, "SlurmdPidFile={d}/log/slurmd.pid");
        let _ = writeln!(s, "SlurmctldLogFile={d}/log/slurmctld.log");
        let _ = writeln!(s, "SlurmdLogFile={d}/log/slurmd.log");
        let _ = writeln!(s, "SlurmctldDebug=info");
        let _ = writeln!(s, "SlurmdDebug=info");
        let _ = writeln!(s, "MailProg=/bin/true");
        let _ = writeln!(s, "ProctrackType=proctrack/linuxproc");
        let _ = writeln!(s, "TaskPlugin=task/affinity");
        let _ = writeln!(s, "JobAcctGatherType=jobacct_gather/none");
        let _ = writeln!(s, "AccountingStorageType=accounting_storage/none");
        let _ = writeln!(s, "JobCompType=jobcomp/none");
        let _ = writeln!(s, "MpiDefault=none");
        let _ = writeln!(s, "SchedulerType=sched/backfill");
        let _ = writeln!(s, "SelectType=select/cons_tres");
        let _ = writeln!(s, "SelectTypeParameters=CR_CPU");
        let _ = writeln!(s, "ReturnToService=2");
        // Short timeouts: everything is on loopback, and a broken cluster should fail fast.
        let _ = writeln!(s, "SlurmctldTimeout=10");
        let _ = writeln!(s, "SlurmdTimeout=10");
        let _ = writeln!(s, "MessageTimeout=5");
        let _ = writeln!(s, "TCPTimeout=2");
        let _ = writeln!(s, "InactiveLimit=0");
        let _ = writeln!(s, "KillWait=2");
        let _ = writeln!(s, "MinJobAge=300");
        let _ = writeln!(
            s,
            "NodeName={} NodeAddr=127.0.0.1 CPUs={} RealMemory={} State=UNKNOWN",
            h.name, h.cpus, h.memory_mib
        );
        let _ = writeln!(
            s,
            "PartitionName={PARTITION} Nodes={} Default=YES MaxTime=INFINITE State=UP",
            h.name
        );
        Ok(s)
    }

    /// Creates the throwaway layout and writes `slurm.conf`, an empty `plugstack.conf`,
    /// `cgroup.conf` where `version` understands `CgroupPlugin=disabled`, and `slurm.key`
    /// (0600, fresh random bytes) for `auth/slurm`.
    pub fn write(&self, version: SlurmVersion) -> Result<()> {
        for sub in ["state", "spool", "log", "jobs"] {
            std::fs::create_dir_all(self.dir.join(sub))
                .with_context(|| format!("cannot create {}", self.dir.join(sub).display()))?;
        }
        // Jobs run as the submitting user and write into jobs/.
        std::fs::set_permissions(
            self.dir.join("jobs"),
            std::fs::Permissions::from_mode(0o755),
        )?;
        std::fs::write(self.conf_path(), self.render()?)
            .with_context(|| format!("cannot write {}", self.conf_path().display()))?;
        std::fs::write(self.dir.join("plugstack.conf"), "")?;
        if version.has_cgroup_disabled() {
            std::fs::write(self.dir.join("cgroup.conf"), "CgroupPlugin=disabled\n")?;
        }
        if self.auth == Auth::Slurm {
            write_key(&self.dir.join("slurm.key"))?;
        }
        Ok(())
    }
}

/// Writes 1 KiB of fresh random bytes to a new file `path` readable only by its owner (the
/// shared secret of `auth/slurm` or MUNGE). The key never leaves the throwaway directory.
pub fn write_key(path: &Path) -> Result<()> {
    let mut key = vec![0u8; 1024];
    rand::rng().fill_bytes(&mut key);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create the key file {}", path.display()))?;
    f.write_all(&key)
        .with_context(|| format!("cannot write the key file {}", path.display()))?;
    Ok(())
}

/// `SlurmUser`: `root` when running as root, else the current uid (Slurm accepts a numeric
/// uid), so an unprivileged run works too.
pub fn slurm_user() -> String {
    let uid = rustix::process::getuid();
    if uid.is_root() {
        "root".to_owned()
    } else {
        uid.as_raw().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &str) -> ClusterConfig {
        ClusterConfig {
            dir: PathBuf::from(dir),
            plugin_dir: PathBuf::from("/opt/slurm/lib/slurm"),
            host: Host {
                name: "node1".into(),
                cpus: 2,
                memory_mib: 1000,
            },
            controller_port: 40001,
            node_port: 40002,
            auth: Auth::Munge {
                socket: PathBuf::from("/tmp/x/munge/munge.socket"),
            },
            user: "root".into(),
        }
    }

    #[test]
    fn versions_parse_and_order() {
        let v = SlurmVersion::parse("slurm 23.11.0-0rc1").unwrap();
        assert_eq!(v.to_string(), "23.11.0");
        assert!(v.has_auth_slurm() && !v.has_cgroup_disabled());
        let old = SlurmVersion::parse("slurm-wlm 22.05.8").unwrap();
        assert!(!old.has_auth_slurm());
        assert!(
            SlurmVersion::parse("slurm 24.05.1")
                .unwrap()
                .has_cgroup_disabled()
        );
        for bad in ["", "22.05.8", "slurm x.y.z", "munge 0.5.15", "slurm 22.05"] {
            assert!(SlurmVersion::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn conf_has_one_node_one_partition_and_our_paths() {
        let text = config("/tmp/x").render().unwrap();
        assert!(text.contains("PluginDir=/opt/slurm/lib/slurm\n"));
        assert!(text.contains("AuthInfo=socket=/tmp/x/munge/munge.socket\n"));
        assert!(text.contains("SlurmctldHost=node1(127.0.0.1)\n"));
        assert!(text.contains("ProctrackType=proctrack/linuxproc\n"));
        assert!(text.contains("TaskPlugin=task/affinity\n"));
        assert_eq!(text.matches("\nNodeName=").count(), 1);
        assert_eq!(text.matches("\nPartitionName=").count(), 1);
        assert!(text.contains("NodeName=node1 NodeAddr=127.0.0.1 CPUs=2 RealMemory=1000"));
        assert!(!text.contains("cgroup"));
    }

    #[test]
    fn paths_slurm_cannot_quote_are_refused() {
        for dir in ["/tmp/a b", "/tmp/a#b", "/tmp/a=b", "/tmp/a\nb"] {
            let err = config(dir).render().unwrap_err().to_string();
            assert!(err.contains("cannot appear in slurm.conf"), "{err}");
        }
    }

    #[test]
    fn auth_slurm_writes_a_private_key() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = config(dir.path().to_str().unwrap());
        c.auth = Auth::Slurm;
        c.write(SlurmVersion::parse("slurm 24.11.1").unwrap())
            .unwrap();
        let key = dir.path().join("slurm.key");
        let meta = std::fs::metadata(&key).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(meta.len(), 1024);
        let conf = std::fs::read_to_string(dir.path().join("slurm.conf")).unwrap();
        assert!(conf.contains("AuthType=auth/slurm\nCredType=cred/slurm\n"));
        assert_eq!(
            std::fs::read_to_string(dir.path().join("cgroup.conf")).unwrap(),
            "CgroupPlugin=disabled\n"
        );
        // A second write never reuses (or silently overwrites) a key.
        assert!(
            c.write(SlurmVersion::parse("slurm 24.11.1").unwrap())
                .is_err()
        );
    }

    #[test]
    fn slurm_root_is_found_in_a_prefix_a_view_or_spack_layout() {
        let dir = tempfile::tempdir().unwrap();
        let err = find_slurm_root(dir.path()).unwrap_err().to_string();
        assert!(err.contains("no Slurm installation"), "{err}");
        let spack = dir.path().join("linux-x86_64_v3/slurm-25.11.0-abcdef");
        std::fs::create_dir_all(spack.join("sbin")).unwrap();
        std::fs::create_dir_all(dir.path().join("linux-x86_64_v3/munge-0.5.16-xyz/sbin")).unwrap();
        std::fs::write(spack.join("sbin/slurmctld"), "").unwrap();
        assert_eq!(find_slurm_root(dir.path()).unwrap(), spack);
        std::fs::create_dir_all(dir.path().join("view/sbin")).unwrap();
        std::fs::write(dir.path().join("view/sbin/slurmctld"), "").unwrap();
        assert_eq!(
            find_slurm_root(dir.path()).unwrap(),
            dir.path().join("view")
        );
    }

    #[test]
    fn plugin_dir_is_found_in_known_layouts_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let err = find_plugin_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains("no Slurm plugin directory"), "{err}");
        let lib = dir.path().join("lib64/slurm");
        std::fs::create_dir_all(&lib).unwrap();
        std::fs::write(lib.join("select_cons_tres.so"), "").unwrap();
        let err = find_plugin_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains("lacks proctrack_linuxproc.so"), "{err}");
        for p in REQUIRED_PLUGINS {
            std::fs::write(lib.join(p), "").unwrap();
        }
        assert_eq!(find_plugin_dir(dir.path()).unwrap(), lib);
    }
}
