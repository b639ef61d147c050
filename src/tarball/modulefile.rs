//! The Lmod modulefiles shipped in `modules/`: Lua, relocation-aware (each finds the unpacked
//! tarball from its own path with `myFileName()`), no `LD_LIBRARY_PATH`.
//!
//! `slurm/<version>.lua` sets `PATH`, `MANPATH`, `SLURM_ROOT` and `SLURM_CONF` (a value set
//! before loading wins, else `SLURM_FACTORY_SLURM_CONF`, else `/etc/slurm/slurm.conf`; `pushenv`
//! restores the previous value on unload), with `conflict("slurm")` and
//! `family("workloadmanager")`. `openmpi/<version>.lua`, when the view has Open MPI, also sets
//! `MPI_HOME` and `OPAL_PREFIX` (how a moved Open MPI finds its help files and components).

use crate::catalog::{GccVersion, SlurmVersion};

const SLURM: &str = include_str!("templates/slurm.lua");
const OPENMPI: &str = include_str!("templates/openmpi.lua");

/// A modulefile: its path under `modules/` and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Modulefile {
    /// Path relative to `modules/` (`slurm/25.11.lua`).
    pub(crate) path: String,
    /// The Lua text.
    pub(crate) text: String,
}

/// The modulefile of Slurm `slurm` built with `gcc`.
pub(crate) fn slurm(slurm: &SlurmVersion, gcc: &GccVersion) -> Modulefile {
    Modulefile {
        path: format!("slurm/{slurm}.lua"),
        text: SLURM
            .replace("{{slurm_version}}", slurm.as_str())
            .replace("{{gcc_version}}", gcc.as_str()),
    }
}

/// The modulefile of Open MPI `version` built with `gcc`. `version` is a Spack version
/// (letters, digits, `.`, `-`, `_`), checked by the caller.
pub(crate) fn openmpi(version: &str, gcc: &GccVersion) -> Modulefile {
    Modulefile {
        path: format!("openmpi/{version}.lua"),
        text: OPENMPI
            .replace("{{openmpi_version}}", version)
            .replace("{{gcc_version}}", gcc.as_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether any Lua statement (not a comment) mentions `LD_LIBRARY_PATH`.
    fn touches_ld_library_path(lua: &str) -> bool {
        lua.lines()
            .filter(|l| !l.trim_start().starts_with("--"))
            .any(|l| l.contains("LD_LIBRARY_PATH"))
    }

    #[test]
    fn renders_every_placeholder() {
        let s = slurm(&"25.11".parse().unwrap(), &"13.4.0".parse().unwrap());
        assert_eq!(s.path, "slurm/25.11.lua");
        assert!(!s.text.contains("{{"), "{}", s.text);
        assert!(s.text.contains("family(\"workloadmanager\")"));
        assert!(!touches_ld_library_path(&s.text));
        let o = openmpi("5.0.8", &"13.4.0".parse().unwrap());
        assert_eq!(o.path, "openmpi/5.0.8.lua");
        assert!(!o.text.contains("{{"));
        assert!(!touches_ld_library_path(&o.text));
    }
}
