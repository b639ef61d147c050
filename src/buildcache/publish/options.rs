//! What to publish and how: [`PublishMode`] and [`PublishOptions`].

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Result, bail};

use crate::pgp::{KeyFingerprint, TrustedKeys};
use crate::s3::progress::ProgressMode;

/// Which specs to publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PublishMode {
    /// Every spec in the source (Slurm and its dependencies).
    #[default]
    All,
    /// Slurm (package name `slurm`) and everything it needs at run time: its link/run
    /// dependency closure, which is what `spack install --cache-only slurm` and test-install
    /// install with it. Left out: the other roots built beside it (openmpi, hdf5, ...) and
    /// build-only tools. So a slurm-only cache installs Slurm on its own.
    SlurmOnly,
    /// Nothing: sign nothing, publish nothing.
    None,
}

impl FromStr for PublishMode {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "all" => Ok(PublishMode::All),
            "slurm-only" => Ok(PublishMode::SlurmOnly),
            "none" => Ok(PublishMode::None),
            other => bail!("publish mode {other:?} is not one of: all, slurm-only, none"),
        }
    }
}

impl fmt::Display for PublishMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PublishMode::All => "all",
            PublishMode::SlurmOnly => "slurm-only",
            PublishMode::None => "none",
        })
    }
}

/// Options of [`publish`].
#[derive(Debug, Clone)]
pub struct PublishOptions {
    /// Which specs to publish.
    pub mode: PublishMode,
    /// Check and plan everything, report what would change, write nothing.
    pub dry_run: bool,
    /// Keys whose signatures on source manifests are accepted (the signing key always is).
    pub trusted: TrustedKeys,
    /// Without a signing key: publish unsigned spec manifests as they are.
    pub allow_unsigned: bool,
    /// Further keys to publish from the source and to accept in the destination's key index.
    pub publish_key_fingerprints: Vec<KeyFingerprint>,
    /// Keep a destination key index that names keys this publish does not know.
    pub accept_unknown_keys: bool,
    /// Read-merge-write cycles of each pointer manifest before giving up.
    pub index_attempts: u32,
    /// How upload progress is shown.
    pub progress: ProgressMode,
    /// Interval of the periodic progress lines.
    pub progress_interval: Duration,
    /// The package [`PublishMode::SlurmOnly`] keeps with its run-time closure: `slurm`. (Tests
    /// name a package of the Spack-written fixture caches, which hold no Slurm.)
    pub slurm_package: String,
}

impl Default for PublishOptions {
    fn default() -> Self {
        PublishOptions {
            mode: PublishMode::All,
            dry_run: false,
            trusted: TrustedKeys::new(),
            allow_unsigned: false,
            publish_key_fingerprints: Vec::new(),
            accept_unknown_keys: false,
            index_attempts: 40,
            progress: ProgressMode::Auto,
            progress_interval: Duration::from_secs(10),
            slurm_package: "slurm".to_owned(),
        }
    }
}
