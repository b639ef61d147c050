//! The in-process library check ([`slurm_factory::install::ldso`]) against the host's real
//! `ldd` (glibc's loader in trace mode), on the same files, asserting the same set of
//! `name => path` (or `not found`) lines: the host's programs and shared libraries, binaries
//! built here with gcc that exercise RPATH against RUNPATH, `LD_LIBRARY_PATH`, DSTs, candidates
//! of another machine and a missing library, the relocated fixture install, and the real Slurm
//! build when `scripts/real-slurm` has made one.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use slurm_factory::install::ldso::{Loader, Resolution};

/// What both sides say one file loads: `(name, Some(path) | None)`; the interpreter and the
/// vDSO left out.
type Listing = BTreeSet<(String, Option<String>)>;

/// `ldd file` (with `LD_LIBRARY_PATH` as given), parsed; `None` when ldd refuses the file (not
/// dynamic, not ELF, another machine).
fn ldd(file: &Path, llp: Option<&OsStr>) -> Option<Listing> {
    let mut c = Command::new("ldd");
    c.arg(file)
        .env_remove("LD_LIBRARY_PATH")
        .env_remove("LD_PRELOAD");
    if let Some(p) = llp {
        c.env("LD_LIBRARY_PATH", p);
    }
    let out = c.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || text.contains("not a dynamic executable") {
        return None;
    }
    let mut set = Listing::new();
    for l in text.lines() {
        let l = l.trim();
        if l.is_empty() || l.starts_with("linux-vdso") || l == "statically linked" {
            continue;
        }
        if let Some((name, rest)) = l.split_once(" => ") {
            if rest.trim() == "not found" {
                set.insert((name.to_owned(), None));
            } else {
                let path = rest.rsplit_once(" (").map_or(rest, |(p, _)| p);
                set.insert((name.to_owned(), Some(path.to_owned())));
            }
        } else {
            // `/lib64/ld-linux-x86-64.so.2 (0x…)`: the interpreter, or a DT_NEEDED with a `/`.
            let path = l.rsplit_once(" (").map_or(l, |(p, _)| p);
            set.insert((path.to_owned(), Some(path.to_owned())));
        }
    }
    Some(set)
}

fn ours(r: &Resolution) -> Listing {
    let mut set: Listing = r
        .libraries
        .iter()
        .map(|l| {
            let path = l.path.as_ref().map(|p| p.display().to_string());
            if l.name.contains('/') {
                (path.clone().unwrap_or(l.name.clone()), path)
            } else {
                (l.name.clone(), path)
            }
        })
        .collect();
    if let Some(i) = &r.interpreter {
        let i = i.display().to_string();
        set.insert((i.clone(), Some(i)));
    }
    set
}

/// Asserts the loader and `ldd` agree on `file`; returns whether ldd listed it.
fn agree(loader: &Loader, file: &Path, llp: Option<&OsStr>) -> bool {
    let Some(want) = ldd(file, llp) else {
        return false;
    };
    let r = loader.resolve(file);
    assert!(r.errors.is_empty(), "{}: {:?}", file.display(), r.errors);
    let got = ours(&r);
    assert_eq!(
        got,
        want,
        "{}: ours (left) and ldd (right) differ",
        file.display()
    );
    true
}

/// Every regular, dynamically linked ELF file directly in `dir` whose name passes `keep`.
fn dynamic_elves(dir: &Path, keep: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if !keep(&name) || !e.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        if slurm_factory::elf::read(&p)
            .ok()
            .flatten()
            .is_some_and(|e| !e.needed.is_empty())
        {
            out.push(p);
        }
    }
    out.sort();
    out
}

#[test]
fn agrees_with_ldd_on_the_hosts_programs_and_libraries() {
    let loader = Loader::host(None);
    assert!(loader.cache_error().is_none(), "{:?}", loader.cache_error());
    let mut files = dynamic_elves(Path::new("/bin"), |_| true);
    files.extend(dynamic_elves(Path::new("/usr/lib/x86_64-linux-gnu"), |n| {
        n.contains(".so")
    }));
    assert!(files.len() > 100, "only {} files", files.len());
    let mut compared = 0;
    for f in &files {
        if agree(&loader, f, None) {
            compared += 1;
        }
    }
    assert!(
        compared > 100,
        "ldd listed only {compared} of {}",
        files.len()
    );
    eprintln!("agreed with ldd on {compared} host files");
}

struct Built {
    dir: tempfile::TempDir,
}

impl Built {
    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
    fn gcc(&self, args: &[&str]) {
        let out = Command::new("gcc")
            .current_dir(self.dir.path())
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "gcc {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    fn write(&self, rel: &str, text: &str) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    /// `lib<name>.so` in `dir` returning `value`, with `extra` link arguments.
    fn lib(&self, dir: &str, name: &str, value: u32, extra: &[&str]) {
        std::fs::create_dir_all(self.path(dir)).unwrap();
        let src = format!("{name}.c");
        // libw and libx call libv, so the linker keeps it as their DT_NEEDED.
        let body = if matches!(name, "w" | "x") {
            format!("int v(void); int {name}(void){{return v() + {value};}}\n")
        } else {
            format!("int {name}(void){{return {value};}}\n")
        };
        self.write(&src, &body);
        let out = format!("{dir}/lib{name}.so");
        let mut args = vec!["-shared", "-fPIC", "-o", &out, &src];
        args.extend_from_slice(extra);
        self.gcc(&args);
    }
}

/// Copies `lib` to `dir` with its `e_machine` changed to aarch64's: a candidate the loader must
/// pass over.
fn foreign_copy(lib: &Path, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let mut b = std::fs::read(lib).unwrap();
    b[18..20].copy_from_slice(&183u16.to_le_bytes());
    std::fs::write(dir.join(lib.file_name().unwrap()), b).unwrap();
}

#[test]
fn agrees_with_ldd_on_search_order_dsts_and_missing_libraries() {
    if common_gcc_missing() {
        return;
    }
    let b = Built {
        dir: tempfile::tempdir().unwrap(),
    };
    // One name, `libv.so`, in several directories, each returning something else.
    b.lib("rpath", "v", 1, &[]);
    b.lib("runpath", "v", 2, &[]);
    b.lib("env", "v", 3, &[]);
    b.lib("lib/x86_64-linux-gnu", "v", 4, &[]);
    b.lib("haswell", "v", 5, &[]);
    b.lib("x86_64", "v", 6, &[]);
    // libw.so needs libv.so and has its own RUNPATH: its search does not use the program's RPATH.
    b.lib(
        "w",
        "w",
        7,
        &[
            "-L",
            "runpath",
            "-lv",
            "-Wl,--enable-new-dtags,-rpath,$ORIGIN/../env",
        ],
    );
    // libx.so needs libv.so and has no search path: the program's RPATH applies (inherited).
    b.lib("x", "x", 8, &["-L", "runpath", "-lv"]);
    // A library that will be deleted after linking.
    b.lib("gone", "gone", 9, &[]);
    b.write("m.c", "int v(void); int main(void){return v();}\n");
    b.write("w.c", "int w(void); int main(void){return w();}\n");
    b.write("x.c", "int x(void); int main(void){return x();}\n");
    let prog = |out: &str, rpath: &str, new_dtags: bool, libs: &[&str]| {
        let src = match libs.first() {
            Some(&"-lw") => "w.c",
            Some(&"-lx") => "x.c",
            _ => "m.c",
        };
        let tags = if new_dtags {
            "--enable-new-dtags"
        } else {
            "--disable-new-dtags"
        };
        let flag = format!("-Wl,{tags},-rpath,{rpath}");
        let mut args = vec![
            src,
            "-o",
            out,
            "-L",
            "rpath",
            "-L",
            "w",
            "-L",
            "x",
            "-L",
            "gone",
            "-Wl,--no-as-needed",
        ];
        args.extend_from_slice(libs);
        args.push(&flag);
        b.gcc(&args);
    };
    let root = b.dir.path().display().to_string();
    prog("rpath-abs", &format!("{root}/rpath"), false, &["-lv"]);
    prog("runpath-abs", &format!("{root}/runpath"), true, &["-lv"]);
    prog("origin", "$ORIGIN/rpath", false, &["-lv"]);
    prog("origin-braced", "${ORIGIN}/runpath", true, &["-lv"]);
    prog("lib-dst", "$ORIGIN/$LIB", false, &["-lv"]);
    prog(
        "platform",
        "$ORIGIN/$PLATFORM:$ORIGIN/x86_64",
        false,
        &["-lv"],
    );
    prog(
        "two",
        &format!("{root}/nonexistent::{root}/runpath"),
        false,
        &["-lv"],
    );
    // RPATH on the program, RUNPATH on libw: libw's libv comes from ../env, not the RPATH.
    prog(
        "inherit-runpath",
        &format!("{root}/rpath:{root}/w"),
        false,
        &["-lw"],
    );
    // RPATH inherited by libx, which has none of its own.
    prog(
        "inherit-rpath",
        &format!("{root}/runpath:{root}/x"),
        false,
        &["-lx"],
    );
    prog(
        "missing",
        &format!("{root}/gone:{root}/rpath"),
        true,
        &["-lgone", "-lv"],
    );
    // A foreign-machine libv.so first in the RPATH: passed over for the real one after it.
    foreign_copy(&b.path("rpath/libv.so"), &b.path("foreign"));
    prog(
        "foreign-first",
        &format!("{root}/foreign:{root}/rpath"),
        false,
        &["-lv"],
    );
    prog("none", "/nonexistent", false, &["-lv"]);
    std::fs::remove_file(b.path("gone/libgone.so")).unwrap();

    let names = [
        "rpath-abs",
        "runpath-abs",
        "origin",
        "origin-braced",
        "lib-dst",
        "platform",
        "two",
        "inherit-runpath",
        "inherit-rpath",
        "missing",
        "foreign-first",
        "none",
    ];
    let env = format!("{root}/env");
    let cwd_env = format!("{root}/env:;{root}/nonexistent");
    for llp in [None, Some(env.as_str()), Some(cwd_env.as_str())] {
        let loader = Loader::host(llp.map(OsStr::new));
        for n in names {
            assert!(
                agree(&loader, &b.path(n), llp.map(OsStr::new)),
                "ldd refused {n}"
            );
        }
    }
    // The cases say what they test: the missing library is reported, with who needs it.
    let loader = Loader::host(None);
    let r = loader.resolve(&b.path("missing"));
    let missing: Vec<_> = r.missing().map(|l| l.name.as_str()).collect();
    assert_eq!(missing, ["libgone.so"], "{r:?}");
    assert!(!r.ok());
    let r = loader.resolve(&b.path("none"));
    assert_eq!(r.missing().count(), 1, "{r:?}");
    let r = loader.resolve(&b.path("foreign-first"));
    assert!(r.ok(), "{r:?}");
    assert_eq!(
        r.libraries[0].path.as_deref(),
        Some(b.path("rpath/libv.so").as_path())
    );
    let r = loader.resolve(&b.path("inherit-runpath"));
    let v = r.libraries.iter().find(|l| l.name == "libv.so").unwrap();
    assert_eq!(
        v.path
            .as_deref()
            .unwrap()
            .parent()
            .unwrap()
            .file_name()
            .unwrap(),
        "env",
        "{r:?}"
    );
    // The check in test-install's summary names the file and the library.
    let check =
        slurm_factory::install::smoke::libraries_resolve(&[b.path("missing"), b.path("origin")]);
    let text = format!("{check:?}");
    assert!(text.contains("libgone.so => not found"), "{text}");
    assert!(text.contains("2 ELF files"), "{text}");
}

fn common_gcc_missing() -> bool {
    crate::common::require_tool("gcc").is_none()
}

/// The fixture buildcache installed by test-install: every ELF file agrees, and the relocated
/// demo-app finds demo-lib in its new prefix.
#[test]
fn agrees_with_ldd_on_the_relocated_fixture_install() {
    let t = tempfile::tempdir().unwrap();
    let prefix = t.path().join("opt/sw");
    let cache = format!(
        "file://{}",
        crate::buildcache::fixtures().join("signed").display()
    );
    let key = crate::buildcache::signer_key();
    let (code, stdout, summary) = crate::buildcache::test_install(
        t.path(),
        &[
            "--buildcache",
            &cache,
            "--spec",
            "demo-app",
            "--prefix",
            prefix.to_str().unwrap(),
            "--trusted-key",
            key.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{stdout}\n{summary}");
    let files = slurm_factory::install::smoke::dynamic_elf_files(std::slice::from_ref(&prefix));
    assert!(!files.is_empty(), "{files:?}");
    let loader = Loader::host(None);
    for f in &files {
        assert!(agree(&loader, f, None), "ldd refused {}", f.display());
    }
    let app = files.iter().find(|f| f.ends_with("bin/demo-app")).unwrap();
    let r = loader.resolve(app);
    let lib = r.libraries.iter().find(|l| l.name == "libdemo.so").unwrap();
    assert!(lib.path.as_ref().unwrap().starts_with(&prefix), "{r:?}");
}

/// The real Slurm build of `scripts/real-slurm` (its install tree and view), when there is one.
#[test]
fn agrees_with_ldd_on_real_slurm() {
    let root = crate::common::repo_root().join(".real-slurm");
    let Ok(rd) = std::fs::read_dir(&root) else {
        eprintln!("skipped: no .real-slurm (scripts/real-slurm has not run)");
        return;
    };
    let dirs: Vec<PathBuf> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("view").exists())
        .collect();
    if dirs.is_empty() {
        eprintln!("skipped: no finished build under .real-slurm");
        return;
    }
    let loader = Loader::host(None);
    let mut n = 0;
    for d in dirs {
        let view = std::fs::canonicalize(d.join("view")).unwrap();
        for f in slurm_factory::install::smoke::dynamic_elf_files(&[view]) {
            if agree(&loader, &f, None) {
                n += 1;
            }
        }
    }
    if n == 0 {
        eprintln!("skipped: the real Slurm build under .real-slurm has no ELF files yet");
        return;
    }
    eprintln!("agreed with ldd on {n} real Slurm files");
}
