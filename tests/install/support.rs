//! Helpers: compiling small C programs and libraries with the host gcc.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs `gcc args...` and panics with its output when it fails.
pub fn gcc(args: &[&str]) {
    let out = Command::new("gcc").args(args).output().expect("gcc runs");
    assert!(
        out.status.success(),
        "gcc {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Writes `src` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, src: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, src).unwrap();
    p
}

/// Builds `lib_dir/libgreet.so` (returns "hello from greet") and `bin_dir/app` linked against it
/// with `-rpath rpath` and the given extra linker flags. Returns the app's path.
pub fn build_app(lib_dir: &Path, bin_dir: &Path, rpath: &str, extra: &[&str]) -> PathBuf {
    std::fs::create_dir_all(lib_dir).unwrap();
    std::fs::create_dir_all(bin_dir).unwrap();
    let src = lib_dir.parent().unwrap().join("src");
    let lib_c = write(
        &src,
        "greet.c",
        "const char* greet(void){ return \"hello from greet\"; }\n",
    );
    let app_c = write(
        &src,
        "app.c",
        "#include <stdio.h>\nconst char* greet(void);\nint main(){ puts(greet()); return 0; }\n",
    );
    let lib = lib_dir.join("libgreet.so");
    gcc(&[
        "-shared",
        "-fPIC",
        "-o",
        lib.to_str().unwrap(),
        lib_c.to_str().unwrap(),
    ]);
    let app = bin_dir.join("app");
    let rp = format!("-Wl,-rpath,{rpath}");
    let l = format!("-L{}", lib_dir.display());
    let mut args = vec![
        "-o",
        app.to_str().unwrap(),
        app_c.to_str().unwrap(),
        &l,
        "-lgreet",
        &rp,
    ];
    args.extend_from_slice(extra);
    gcc(&args);
    app
}

/// Runs `path` without `LD_LIBRARY_PATH` and returns (success, stdout, stderr).
pub fn run(path: &Path) -> (bool, String, String) {
    let out = Command::new(path)
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .expect("runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `readelf -d` output.
pub fn readelf_dynamic(path: &Path) -> String {
    let out = Command::new("readelf")
        .arg("-d")
        .arg(path)
        .output()
        .expect("readelf");
    String::from_utf8_lossy(&out.stdout).into_owned()
}
