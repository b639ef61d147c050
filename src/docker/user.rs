//! The user a build container runs as: the invoking user's uid:gid, so everything the build
//! writes through the mounts is owned by the runner user, not root.

use std::fmt;
use std::path::Path;

use anyhow::{Context, Result, bail};

/// A numeric uid:gid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserSpec {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

impl fmt::Display for UserSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.uid, self.gid)
    }
}

impl UserSpec {
    /// The real uid and gid of this process, read from `/proc/self/status` (no `unsafe`).
    pub fn current() -> Result<UserSpec> {
        let status = std::fs::read_to_string("/proc/self/status")
            .context("cannot read /proc/self/status to find this process's uid and gid")?;
        Self::parse_status(&status)
    }

    /// Parses the `Uid:` and `Gid:` lines of a `/proc/<pid>/status` text (real ids).
    pub fn parse_status(status: &str) -> Result<UserSpec> {
        let field = |name: &str| -> Result<u32> {
            let line = status
                .lines()
                .find(|l| l.starts_with(name))
                .with_context(|| format!("/proc/self/status has no {name} line"))?;
            line[name.len()..]
                .split_whitespace()
                .next()
                .and_then(|v| v.parse().ok())
                .with_context(|| format!("cannot parse {line:?}"))
        };
        Ok(UserSpec {
            uid: field("Uid:")?,
            gid: field("Gid:")?,
        })
    }

    /// Makes `dir` and everything below it owned by this user, when that is needed and
    /// possible: needed when the build runs as another user than this process; possible when
    /// this process is root. Fails with a clear message otherwise.
    pub fn own_tree(&self, dir: &Path) -> Result<()> {
        let me = UserSpec::current()?;
        if me == *self {
            return Ok(());
        }
        if me.uid != 0 {
            bail!(
                "the build container should run as {self}, but this process runs as {me} and cannot hand {} over; run as {self} or as root",
                dir.display()
            );
        }
        chown_recursive(dir, self)
    }
}

fn chown_recursive(path: &Path, user: &UserSpec) -> Result<()> {
    std::os::unix::fs::lchown(path, Some(user.uid), Some(user.gid))
        .with_context(|| format!("cannot chown {} to {user}", path.display()))?;
    let meta = std::fs::symlink_metadata(path)?;
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            chown_recursive(&entry?.path(), user)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_real_ids() {
        let s = "Name:\tx\nUid:\t1001\t1002\t1003\t1004\nGid:\t2001\t2002\t2003\t2004\n";
        assert_eq!(
            UserSpec::parse_status(s).unwrap(),
            UserSpec {
                uid: 1001,
                gid: 2001
            }
        );
        assert!(UserSpec::parse_status("Name: x\n").is_err());
    }

    #[test]
    fn current_matches_id_command() {
        let me = UserSpec::current().unwrap();
        let out = std::process::Command::new("id").arg("-u").output().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            me.uid.to_string()
        );
        let out = std::process::Command::new("id").arg("-g").output().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            me.gid.to_string()
        );
    }
}
