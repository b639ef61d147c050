//! Smoke checks after an install: the Slurm tools report their version, every dynamically
//! linked ELF file resolves all its libraries (checked in-process the way the dynamic loader
//! searches, [`super::ldso`]), `module load slurm`
//! works under Lmod when Lmod is installed, and for a compiler: hello world in C, C++ and
//! Fortran compiles and runs. Every command runs without `LD_LIBRARY_PATH`, so a check passes
//! only when the install is relocatable on its own.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use super::summary::Check;

/// The Slurm tools checked when present, with their version flag.
pub const SLURM_TOOLS: [(&str, &str); 4] = [
    ("sinfo", "--version"),
    ("srun", "--version"),
    ("scontrol", "--version"),
    ("slurmctld", "-V"),
];

/// Where Debian's Lmod keeps its shell init.
pub const LMOD_INIT: &str = "/usr/share/lmod/lmod/init/bash";

const TIMEOUT: Duration = Duration::from_secs(120);

/// Runs `cmd` without `LD_LIBRARY_PATH`, killing it after two minutes.
fn run(mut cmd: Command) -> std::io::Result<Output> {
    cmd.env_remove("LD_LIBRARY_PATH")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn()?;
    let start = std::time::Instant::now();
    loop {
        if child.try_wait()?.is_some() {
            return child.wait_with_output();
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            let out = child.wait_with_output()?;
            return Ok(Output {
                status: out.status,
                stdout: out.stdout,
                stderr: b"timed out after 120 s".to_vec(),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn text(o: &Output) -> String {
    let mut s = String::from_utf8_lossy(&o.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&o.stderr));
    s.trim().to_owned()
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").chars().take(200).collect()
}

/// A minimal `slurm.conf` for the version checks: since Slurm 22.05 the clients read their
/// configuration (or look for a configless controller in DNS) before they print a version, so
/// `sinfo --version` fails on a host without one. `SLURM_CONF` from the environment wins.
pub struct SlurmConf {
    _dir: Option<tempfile::TempDir>,
    /// The file to pass as `SLURM_CONF`.
    pub path: PathBuf,
}

impl SlurmConf {
    /// `$SLURM_CONF`, or a fresh minimal file (`ClusterName=smoke`, `SlurmctldHost=localhost`).
    pub fn for_checks() -> std::io::Result<Self> {
        if let Some(p) = std::env::var_os("SLURM_CONF").filter(|p| !p.is_empty()) {
            return Ok(SlurmConf {
                _dir: None,
                path: PathBuf::from(p),
            });
        }
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("slurm.conf");
        std::fs::write(&path, "ClusterName=smoke\nSlurmctldHost=localhost\n")?;
        Ok(SlurmConf {
            _dir: Some(dir),
            path,
        })
    }
}

/// `<tool> <flag>` for each Slurm tool found in `bin_dirs` (first hit wins), with `SLURM_CONF`
/// set to `conf`.
pub fn slurm_versions(bin_dirs: &[PathBuf], conf: &Path) -> Vec<Check> {
    let mut out = Vec::new();
    for (tool, flag) in SLURM_TOOLS {
        let Some(path) = bin_dirs.iter().map(|d| d.join(tool)).find(|p| p.is_file()) else {
            continue;
        };
        let name = format!("`{tool} {flag}`");
        out.push(
            match run({
                let mut c = Command::new(&path);
                c.arg(flag).env("SLURM_CONF", conf);
                c
            }) {
                Ok(o) if o.status.success() && !text(&o).is_empty() => {
                    Check::pass(name, first_line(&text(&o)))
                }
                Ok(o) => Check::fail(
                    name,
                    format!(
                        "{} exited with {}: {}",
                        path.display(),
                        o.status,
                        first_line(&text(&o))
                    ),
                ),
                Err(e) => Check::fail(name, format!("cannot run {}: {e}", path.display())),
            },
        );
    }
    out
}

/// Every regular file under `dirs` (not following symlinks) that is a dynamically linked ELF.
pub fn dynamic_elf_files(dirs: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = dirs.to_vec();
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        let mut entries: Vec<_> = rd.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let Ok(t) = e.file_type() else { continue };
            let p = e.path();
            if t.is_dir() {
                stack.push(p);
            } else if t.is_file() {
                let mut head = [0u8; 4];
                let is_elf = std::fs::File::open(&p)
                    .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
                    .is_ok()
                    && crate::elf::is_elf(&head);
                if is_elf
                    && crate::elf::read(&p)
                        .ok()
                        .flatten()
                        .is_some_and(|e| !e.needed.is_empty())
                {
                    out.push(p);
                }
            }
        }
    }
    out.sort();
    out
}

/// [`dynamic_elf_files`] over the directories among `paths`, plus the paths that are
/// themselves dynamically linked ELF files (symlinks followed, e.g. `/usr/bin/gcc`).
pub fn dynamic_elf_files_or_self(paths: &[PathBuf]) -> Vec<PathBuf> {
    let dirs: Vec<PathBuf> = paths.iter().filter(|p| p.is_dir()).cloned().collect();
    let mut out = dynamic_elf_files(&dirs);
    for p in paths.iter().filter(|p| p.is_file()) {
        if let Ok(real) = std::fs::canonicalize(p)
            && crate::elf::read(&real)
                .ok()
                .flatten()
                .is_some_and(|e| !e.needed.is_empty())
        {
            out.push(real);
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The in-process library check over `files` ([`super::ldso`], in parallel): one check,
/// failing with every unresolved library named with the file that needs it. Like the other
/// checks it runs without `LD_LIBRARY_PATH`, so it passes only when the install resolves its
/// libraries on its own.
pub fn libraries_resolve(files: &[PathBuf]) -> Check {
    use rayon::prelude::*;
    let name = format!("libraries resolve ({} ELF files)", files.len());
    let loader = super::ldso::Loader::host(None);
    let results: Vec<super::ldso::Resolution> =
        files.par_iter().map(|f| loader.resolve(f)).collect();
    let mut missing = Vec::new();
    let mut libraries = std::collections::BTreeSet::new();
    for r in &results {
        missing.extend(r.errors.iter().cloned());
        for l in &r.libraries {
            match &l.path {
                Some(p) => {
                    libraries.insert(p.clone());
                }
                None => missing.push(format!(
                    "{}: {} => not found (needed by {})",
                    r.file.display(),
                    l.name,
                    l.needed_by.display()
                )),
            }
        }
    }
    let note = loader
        .cache_error()
        .map(|e| format!(" ({e})"))
        .unwrap_or_default();
    if missing.is_empty() {
        Check::pass(
            name,
            format!(
                "every DT_NEEDED library was found ({} distinct libraries){note}",
                libraries.len()
            ),
        )
    } else {
        let n = missing.len();
        missing.truncate(10);
        Check::fail(
            name,
            format!("{n} unresolved: {}{note}", missing.join("; ")),
        )
    }
}

/// Whether Lmod is installed (Debian's `lmod` package).
pub fn lmod_available() -> bool {
    Path::new(LMOD_INIT).is_file()
}

/// `module use <modules>; module load <module>` in a clean bash with Lmod; the module must then
/// be loaded and, when `bin` is given, `sinfo` must resolve on `PATH` into `bin` and run
/// (`SLURM_CONF=<conf> sinfo --version`).
pub fn module_load(modules: &Path, module: &str, bin: Option<&Path>, conf: &Path) -> Check {
    let name = format!("`module load {module}` (Lmod)");
    let mut script = format!(
        "set -e\nsource {LMOD_INIT}\nmodule use \"$1\"\nmodule load {module}\ncase \":$LOADEDMODULES:\" in *\":{module}\"*) ;; *) echo \"{module} is not loaded: $LOADEDMODULES\" >&2; exit 1;; esac\n"
    );
    if bin.is_some() {
        script.push_str(
            "p=$(command -v sinfo || true)\ncase \"$p\" in \"$2\"/*) ;; *) echo \"sinfo resolves to '$p', not into $2\" >&2; exit 1;; esac\nSLURM_CONF=\"$3\" sinfo --version\n",
        );
    } else {
        script.push_str("echo \"loaded: $LOADEDMODULES\"\n");
    }
    match run({
        let mut c = Command::new("bash");
        c.arg("--noprofile")
            .arg("--norc")
            .arg("-c")
            .arg(&script)
            .arg("module-check")
            .arg(modules)
            .arg(bin.unwrap_or(Path::new("/nonexistent")))
            .arg(conf);
        c
    }) {
        Ok(o) if o.status.success() => Check::pass(name, first_line(&text(&o))),
        Ok(o) => Check::fail(name, format!("exit {}: {}", o.status, text(&o))),
        Err(e) => Check::fail(name, format!("cannot run bash: {e}")),
    }
}

/// The three hello-world programs: (language, compiler, file name, source, expected output).
const HELLOS: [(&str, &str, &str, &str, &str); 3] = [
    (
        "C",
        "gcc",
        "hello.c",
        "#include <stdio.h>\nint main(void){ puts(\"hello from C\"); return 0; }\n",
        "hello from C",
    ),
    (
        "C++",
        "g++",
        "hello.cc",
        "#include <iostream>\nint main(){ std::cout << \"hello from C++\" << std::endl; return 0; }\n",
        "hello from C++",
    ),
    (
        "Fortran",
        "gfortran",
        "hello.f90",
        "program hello\n  print '(a)', 'hello from Fortran'\nend program hello\n",
        "hello from Fortran",
    ),
];

/// Compiles and runs hello world in C, C++ and Fortran with `<prefix>/bin/{gcc,g++,gfortran}`.
/// Programs get the compiler's own library directories as RPATH (unless the prefix is `/usr`),
/// so they run without `LD_LIBRARY_PATH`.
pub fn compiler_hello_worlds(prefix: &Path) -> Vec<Check> {
    let work = match tempfile::tempdir() {
        Ok(w) => w,
        Err(e) => return vec![Check::fail("compiler checks", format!("no temp dir: {e}"))],
    };
    let mut out = Vec::new();
    for (lang, compiler, file, src, want) in HELLOS {
        let name = format!("hello world in {lang} (`{compiler}`)");
        let cc = prefix.join("bin").join(compiler);
        if !cc.is_file() {
            out.push(Check::fail(name, format!("{} is missing", cc.display())));
            continue;
        }
        let srcp = work.path().join(file);
        let exe = work.path().join(format!("hello-{compiler}"));
        if let Err(e) = std::fs::write(&srcp, src) {
            out.push(Check::fail(name, e.to_string()));
            continue;
        }
        let mut c = Command::new(&cc);
        c.arg(&srcp).arg("-o").arg(&exe);
        if prefix != Path::new("/usr") {
            for lib in ["lib64", "lib"] {
                let d = prefix.join(lib);
                if d.is_dir() {
                    c.arg(format!("-Wl,-rpath,{}", d.display()));
                }
            }
        }
        match run(c) {
            Ok(o) if o.status.success() => {}
            Ok(o) => {
                out.push(Check::fail(
                    name,
                    format!("{} failed ({}): {}", cc.display(), o.status, text(&o)),
                ));
                continue;
            }
            Err(e) => {
                out.push(Check::fail(
                    name,
                    format!("cannot run {}: {e}", cc.display()),
                ));
                continue;
            }
        }
        out.push(match run(Command::new(&exe)) {
            Ok(o) if o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == want => {
                Check::pass(name, format!("compiled and ran: {want:?}"))
            }
            Ok(o) => Check::fail(
                name,
                format!("the program exited {} with {:?}", o.status, text(&o)),
            ),
            Err(e) => Check::fail(name, format!("cannot run the program: {e}")),
        });
    }
    out
}
