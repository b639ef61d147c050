//! A Spack-like build made of real ELF files, compiled here with gcc: a shared library in a
//! padded install prefix, `bin/sinfo`/`bin/srun` and a plugin linked against it with long
//! padded RPATH/RUNPATH entries (as Spack links), text files naming the install tree, files a
//! runtime does not need, and a hardlinked merged view with `env/spack.yaml` and
//! `env/spack.lock` beside it, laid out like a build-slurm namespace.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common;

pub const HASH_LIB: &str = "abcdefghijklmnopqrstuvwxyz234567";
pub const HASH_SLURM: &str = "zyxwvutsrqponmlkjihgfedcba765432";

/// One fake build.
pub struct Build {
    pub tmp: tempfile::TempDir,
    /// build-slurm's output directory (holds the namespace).
    pub out: PathBuf,
    /// The namespace directory.
    pub ns: PathBuf,
    /// The install tree root written to spack.yaml.
    pub install_root: PathBuf,
    /// The demo library's package prefix (padded).
    pub lib_prefix: PathBuf,
    /// Slurm's package prefix (padded).
    pub slurm_prefix: PathBuf,
}

impl Build {
    pub fn view(&self) -> PathBuf {
        self.ns.join("view")
    }

    /// Removes the install tree and the view, so nothing the old RPATHs name exists.
    pub fn remove_build_tree(&self) {
        std::fs::remove_dir_all(&self.install_root).unwrap();
        std::fs::remove_dir_all(self.view()).unwrap();
    }
}

fn run(c: &mut Command) {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{c:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn write(p: &Path, text: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn chmod(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Builds the fake Slurm build, or `None` (skip) without gcc. `with_mpi` adds `bin/mpirun`.
pub fn build(with_mpi: bool) -> Option<Build> {
    common::require_tool("gcc")?;
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let ns = out.join("slurm-25.11-gcc13.4.0-amd64-local1234");
    let install_root = tmp.path().join("bt/install");
    let padded = install_root.join(
        "__spack_path_placeholder__/__spack_path_placeholder__/__spack_path_placeholder__/__spack_path_placeholder__",
    );
    let lib_prefix = padded.join(format!("linux-x86_64_v2/demo-lib-1.0-{HASH_LIB}"));
    let slurm_prefix = padded.join(format!("linux-x86_64_v2/slurm-25.11.6-{HASH_SLURM}"));
    assert!(lib_prefix.to_str().unwrap().len() >= 128);
    let src = tmp.path().join("src");

    // The library, with a soname and the usual symlinks.
    let lib_dir = lib_prefix.join("lib");
    std::fs::create_dir_all(&lib_dir).unwrap();
    write(
        &src.join("demo.c"),
        "const char *demo_version(void) { return \"25.11.6\"; }\n",
    );
    run(Command::new("gcc")
        .args(["-shared", "-fPIC", "-Wl,-soname,libdemo.so.1", "-o"])
        .arg(lib_dir.join("libdemo.so.1.0"))
        .arg(src.join("demo.c")));
    std::os::unix::fs::symlink("libdemo.so.1.0", lib_dir.join("libdemo.so.1")).unwrap();
    std::os::unix::fs::symlink("libdemo.so.1", lib_dir.join("libdemo.so")).unwrap();
    write(
        &lib_prefix.join("include/demo.h"),
        "const char *demo_version(void);\n",
    );
    write(&lib_dir.join("libdemo.a"), "!<arch>\n");
    write(
        &lib_dir.join("pkgconfig/demo.pc"),
        &format!("prefix={}\n", lib_prefix.display()),
    );

    // Slurm: two commands (RUNPATH and RPATH), a plugin, a script, a config file, man pages.
    let bin = slurm_prefix.join("bin");
    let plugins = slurm_prefix.join("lib/slurm");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(&plugins).unwrap();
    write(
        &src.join("sinfo.c"),
        "#include <stdio.h>\n#include <string.h>\nconst char *demo_version(void);\nint main(int c, char **v) {\n  if (c > 1 && (!strcmp(v[1], \"--version\") || !strcmp(v[1], \"-V\"))) { printf(\"slurm %s\\n\", demo_version()); return 0; }\n  return 2;\n}\n",
    );
    let rpath = |dirs: &[&Path]| -> String {
        format!(
            "-Wl,-rpath,{}",
            dirs.iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(":")
        )
    };
    let slurm_lib = slurm_prefix.join("lib");
    for (name, dtags) in [
        ("sinfo", "--enable-new-dtags"),
        ("srun", "--disable-new-dtags"),
    ] {
        run(Command::new("gcc")
            .arg("-o")
            .arg(bin.join(name))
            .arg(src.join("sinfo.c"))
            .arg(format!("-L{}", lib_dir.display()))
            .arg("-ldemo")
            .arg(format!("-Wl,{dtags}"))
            .arg(rpath(&[&slurm_lib, &lib_dir])));
    }
    write(
        &src.join("plugin.c"),
        "const char *demo_version(void);\nconst char *plugin_version(void) { return demo_version(); }\n",
    );
    run(Command::new("gcc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(plugins.join("auth_demo.so"))
        .arg(src.join("plugin.c"))
        .arg(format!("-L{}", lib_dir.display()))
        .arg("-ldemo")
        .arg(rpath(&[&lib_dir])));
    let script = bin.join("seff");
    write(
        &script,
        &format!(
            "#!/bin/sh\n# uses {0}/bin/sinfo\nexec \"{0}/bin/sinfo\" \"$@\"\n",
            slurm_prefix.display()
        ),
    );
    chmod(&script, 0o755);
    write(
        &slurm_prefix.join("etc/slurm/plugstack.conf.d/x.conf"),
        &format!("include {}/etc/extra\n", slurm_prefix.display()),
    );
    write(
        &slurm_prefix.join("share/man/man1/sinfo.1"),
        ".TH SINFO 1\n.SH NAME\nsinfo \\- view nodes\n",
    );
    write(
        &slurm_prefix.join("share/man/man3/slurm_api.3"),
        ".TH API 3\n",
    );
    write(&slurm_prefix.join("share/doc/slurm/README"), "docs\n");
    write(
        &slurm_prefix.join("lib/python3/__pycache__/x.cpython-312.pyc"),
        "\0pyc",
    );
    if with_mpi {
        let mpirun = bin.join("mpirun");
        write(&mpirun, "#!/bin/sh\necho mpirun\n");
        chmod(&mpirun, 0o755);
        write(
            &slurm_prefix.join("share/openmpi/help-mpirun.txt"),
            "help\n",
        );
    }

    // The merged view, hardlinked as Spack does; symlinks copied as symlinks.
    let view = ns.join("view");
    for prefix in [&lib_prefix, &slurm_prefix] {
        merge(prefix, &view);
    }
    // An absolute symlink into the view, as some packages install.
    std::os::unix::fs::symlink(
        view.join("lib/libdemo.so.1"),
        view.join("lib/libdemo-abs.so"),
    )
    .unwrap();

    write(
        &ns.join("env/spack.yaml"),
        &format!(
            "spack:\n  specs: [slurm]\n  config:\n    install_tree:\n      root: {}\n      padded_length: 128\n  view:\n    default:\n      root: {}\n      link_type: hardlink\n",
            install_root.display(),
            view.display()
        ),
    );
    write(
        &ns.join("env/spack.lock"),
        &format!(
            "{{\"_meta\":{{\"lockfile-version\":6}},\"roots\":[{{\"hash\":\"{HASH_SLURM}\",\"spec\":\"slurm\"}}],\"concrete_specs\":{{\"{HASH_SLURM}\":{{\"name\":\"slurm\",\"version\":\"25-11-6-1\"}},\"{HASH_LIB}\":{{\"name\":\"demo-lib\",\"version\":\"1.0\"}},\"openmpihashopenmpihashopenmpiha\":{{\"name\":\"openmpi\",\"version\":\"5.0.8\"}}}}}}\n"
        ),
    );
    std::fs::create_dir_all(ns.join("modules/Core/slurm")).unwrap();
    Some(Build {
        tmp,
        out,
        ns,
        install_root,
        lib_prefix,
        slurm_prefix,
    })
}

fn merge(prefix: &Path, view: &Path) {
    for e in walk(prefix) {
        let rel = e.strip_prefix(prefix).unwrap();
        let dst = view.join(rel);
        let meta = std::fs::symlink_metadata(&e).unwrap();
        if meta.is_dir() {
            std::fs::create_dir_all(&dst).unwrap();
        } else if meta.file_type().is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&e).unwrap(), &dst).unwrap();
        } else {
            std::fs::hard_link(&e, &dst).unwrap();
        }
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for e in entries {
            out.push(e.clone());
            if std::fs::symlink_metadata(&e).unwrap().is_dir() {
                stack.push(e);
            }
        }
    }
    out.sort();
    out
}

/// `tarball-publish` for `build` into `output`, scrubbed environment, `SOURCE_DATE_EPOCH` set.
pub fn publish_cmd(build: &Build, output: &Path) -> Command {
    let mut c = common::scrubbed("tarball-publish");
    c.arg("--build-dir")
        .arg(&build.out)
        .args(["--slurm-version", "25.11", "--compiler-version", "13.4.0"])
        .arg("--output")
        .arg(output)
        .env("SOURCE_DATE_EPOCH", "1700000000");
    c
}

/// Unpacks `tarball` into `dir` with GNU tar and runs the install script.
pub fn unpack_and_install(tarball: &Path, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    run(Command::new("tar")
        .arg("-xzf")
        .arg(tarball)
        .arg("-C")
        .arg(dir));
    run(Command::new("sh").arg(dir.join("data/install.sh")));
}

/// Runs `cmd` with no `LD_LIBRARY_PATH` and returns (success, stdout+stderr).
pub fn run_clean(cmd: &mut Command) -> (bool, String) {
    let out = cmd.env_remove("LD_LIBRARY_PATH").output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The dynamic section of an ELF file, as `readelf -d` prints it.
pub fn readelf_dynamic(path: &Path) -> String {
    let out = Command::new("readelf")
        .arg("-d")
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).into_owned()
}
