//! `test-install` against synthetic signed buildcaches ([`crate::synth`]): choosing a build by
//! its compiler as Spack 1.0 records it (a dependency providing `c`/`cxx`), refusing an
//! ambiguous choice with the candidates listed, refusing an index that lies about the
//! compiler, and scripts relocated to run through `<prefix>/bin/sbang`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::buildcache::{signer_key, test_install};
use crate::synth::{Node, Package, STORE, write_cache};

const GCC13: &str = "g13aaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const GCC14: &str = "g14aaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const HELLO13: &str = "hello13aaaaaaaaaaaaaaaaaaaaaaaaa";
const HELLO14: &str = "hello14aaaaaaaaaaaaaaaaaaaaaaaaa";

fn hello(hash: &str, compiler: &Node) -> Package {
    let node = Node::new("hello", "1.0", hash).built_with(compiler);
    let script = format!(
        "#!/bin/sh\n# installed at {}\necho \"hello built with gcc {}\"\n",
        node.old_prefix(),
        compiler.version
    );
    Package {
        node,
        dag: vec![compiler.clone()],
        files: vec![("bin/hello".into(), script.into_bytes(), 0o755)],
        text: vec!["bin/hello".into()],
    }
}

/// Two builds of hello@1.0, one with the system gcc 13.4.0 and one with 14.2.0.
fn two_compilers(dir: &Path) -> String {
    let gcc13 = Node::new("gcc", "13.4.0", GCC13).external("/usr");
    let gcc14 = Node::new("gcc", "14.2.0", GCC14).external("/usr");
    let root = dir.join("cache");
    write_cache(&root, &[hello(HELLO13, &gcc13), hello(HELLO14, &gcc14)]);
    format!("file://{}", root.display())
}

fn install(work: &Path, cache: &str, spec: &str, prefix: &Path) -> (i32, String) {
    let key = signer_key();
    let (code, stdout, _) = test_install(
        work,
        &[
            "--buildcache",
            cache,
            "--spec",
            spec,
            "--prefix",
            prefix.to_str().unwrap(),
            "--trusted-key",
            key.to_str().unwrap(),
        ],
    );
    (code, stdout)
}

/// The `::error::` message as the runner shows it (`%` arrives escaped as `%25`).
fn error_line(stdout: &str) -> String {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("::error::"))
        .unwrap_or_else(|| panic!("no ::error:: in {stdout}"));
    crate::common::runner_unescape_data(line)
}

fn run_hello(prefix: &Path, hash: &str) -> String {
    let p: PathBuf = prefix.join(format!("linux-x86_64_v3/hello-1.0-{hash}/bin/hello"));
    let out = Command::new(&p).output().unwrap();
    assert!(out.status.success(), "{}", p.display());
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_build_is_chosen_by_its_compiler_and_an_ambiguous_choice_lists_the_candidates() {
    let t = tempfile::tempdir().unwrap();
    let cache = two_compilers(t.path());

    // Only the name: two builds match; both are listed with their compilers, nothing installed.
    let prefix = t.path().join("p0");
    let (code, stdout) = install(t.path(), &cache, "hello", &prefix);
    assert_eq!(code, 1, "{stdout}");
    let err = error_line(&stdout);
    assert!(
        err.contains("hello is ambiguous")
            && err.contains("hello@1.0%gcc@13.4.0/hello13")
            && err.contains("hello@1.0%gcc@14.2.0/hello14")
            && err.contains("%compiler@version"),
        "{err}"
    );
    assert!(!prefix.exists());

    // name%compiler@version.
    let prefix = t.path().join("p13");
    let (code, stdout) = install(t.path(), &cache, "hello%gcc@13.4.0", &prefix);
    assert_eq!(code, 0, "{stdout}");
    assert_eq!(run_hello(&prefix, HELLO13), "hello built with gcc 13.4.0\n");
    assert!(
        !prefix
            .join(format!("linux-x86_64_v3/hello-1.0-{HELLO14}"))
            .exists()
    );
    // The relocated script names its new prefix.
    let text = std::fs::read_to_string(
        prefix.join(format!("linux-x86_64_v3/hello-1.0-{HELLO13}/bin/hello")),
    )
    .unwrap();
    assert!(
        text.contains(&format!(
            "# installed at {}/linux-x86_64_v3/hello-1.0-{HELLO13}\n",
            prefix.display()
        )),
        "{text}"
    );

    // name@version%compiler@version-prefix (Spack's `@14` matches 14.2.0).
    let prefix = t.path().join("p14");
    let (code, stdout) = install(t.path(), &cache, "hello@1.0%gcc@14", &prefix);
    assert_eq!(code, 0, "{stdout}");
    assert_eq!(run_hello(&prefix, HELLO14), "hello built with gcc 14.2.0\n");

    // A compiler nothing was built with: no match, the candidates are listed.
    let prefix = t.path().join("p12");
    let (code, stdout) = install(t.path(), &cache, "hello%gcc@12", &prefix);
    assert_eq!(code, 1, "{stdout}");
    let err = error_line(&stdout);
    assert!(
        err.contains("no spec matching hello%gcc@12") && err.contains("hello@1.0%gcc@13.4.0/"),
        "{err}"
    );
    assert!(!prefix.exists());
}

/// Rewrites the (unsigned) index of the cache at `root` with `edit`.
fn edit_index(root: &Path, edit: impl FnOnce(String) -> String) {
    use slurm_factory::buildcache::layout::{self, BlobRecord, Manifest};
    let ip = root.join(layout::INDEX_MANIFEST);
    let m = Manifest::from_json(&std::fs::read(&ip).unwrap()).unwrap();
    let old = root.join(m.data[0].key().unwrap());
    let db = edit(std::fs::read_to_string(&old).unwrap());
    let rec = BlobRecord::for_bytes(db.as_bytes(), layout::INDEX_MEDIA_TYPE, "none");
    let p = root.join(rec.key().unwrap());
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, db).unwrap();
    std::fs::write(ip, Manifest::new(vec![rec]).to_spack_json()).unwrap();
}

#[test]
fn an_index_that_lies_about_the_compiler_is_caught_by_the_signed_spec() {
    let t = tempfile::tempdir().unwrap();
    let cache = two_compilers(t.path());
    let root = t.path().join("cache");
    // The index (unsigned) now says gcc 13.4.0 is 12.1.0; the signed spec blob still says 13.4.0.
    edit_index(&root, |db| {
        assert!(db.contains("\"version\":\"13.4.0\""), "{db}");
        db.replace("\"version\":\"13.4.0\"", "\"version\":\"12.1.0\"")
    });
    let prefix = t.path().join("p");
    let (code, stdout) = install(t.path(), &cache, "hello%gcc@12.1.0", &prefix);
    assert_eq!(code, 1, "{stdout}");
    let err = error_line(&stdout);
    assert!(
        err.contains("its signed spec is hello@1.0%gcc@13.4.0/hello13")
            && err.contains("tampered with"),
        "{err}"
    );
    assert!(!prefix.join("linux-x86_64_v3").exists());
}

/// A script whose interpreter path is far too long for a `#!` line, written the way Spack
/// rewrites it (`#!/bin/sh <store>/bin/sbang`, then the real `#!` line), with the interpreter (a
/// copy of the system's /bin/sh) inside the same package.
#[test]
fn a_script_spack_pointed_at_sbang_runs_after_relocation() {
    let t = tempfile::tempdir().unwrap();
    let deep = format!("libexec/{}", ["interpreters-live-deep-down"; 5].join("/"));
    let node = Node::new("tool", "1.0", "toolaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    let old_interp = format!("{}/{deep}/sh", node.old_prefix());
    let script = format!(
        "#!/bin/sh {STORE}/bin/sbang\n#!{old_interp} -e\necho \"tool ran: $*\"\ncase $- in *e*) echo errexit;; esac\n"
    );
    let sh = std::fs::read("/bin/sh").unwrap();
    let pkg = Package {
        node: node.clone(),
        dag: Vec::new(),
        files: vec![
            ("bin/tool".into(), script.into_bytes(), 0o755),
            (format!("{deep}/sh"), sh, 0o755),
        ],
        text: vec!["bin/tool".into()],
    };
    let root = t.path().join("cache");
    write_cache(&root, &[pkg]);
    let cache = format!("file://{}", root.display());
    let prefix = t.path().join("p");
    let (code, stdout) = install(t.path(), &cache, "tool", &prefix);
    assert_eq!(code, 0, "{stdout}");

    let pkg_prefix = prefix.join(node.rel_prefix());
    let tool = pkg_prefix.join("bin/tool");
    let new_interp = pkg_prefix.join(&deep).join("sh");
    assert!(
        new_interp.to_str().unwrap().len() > 127,
        "the interpreter path must be too long for #!"
    );
    let text = std::fs::read_to_string(&tool).unwrap();
    let sbang = prefix.join("bin/sbang");
    assert!(
        text.starts_with(&format!(
            "#!/bin/sh {}\n#!{} -e\n",
            sbang.display(),
            new_interp.display()
        )),
        "{text}"
    );
    assert_eq!(
        std::fs::read_to_string(&sbang).unwrap(),
        slurm_factory::install::sbang::SCRIPT
    );
    let out = Command::new(&tool)
        .args(["one", "two words"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Run by the relocated interpreter, with its `-e` argument and ours.
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "tool ran: one two words\nerrexit\n"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&sbang).unwrap().permissions().mode() & 0o777,
        0o755
    );
}

/// `tool` (a script run through sbang) and `app`, which links `tool` and whose build info
/// lists a file its tarball lacks, so relocating `app` fails after `tool` and sbang went in.
#[test]
fn a_failed_install_removes_the_sbang_it_put_in_place() {
    let t = tempfile::tempdir().unwrap();
    let tool = Node::new("tool", "1.0", "toolaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    let script = format!(
        "#!/bin/sh {STORE}/bin/sbang\n#!{}/bin/sh\necho tool\n",
        tool.old_prefix()
    );
    let tool_pkg = Package {
        node: tool.clone(),
        dag: Vec::new(),
        files: vec![
            ("bin/tool".into(), script.into_bytes(), 0o755),
            ("bin/sh".into(), std::fs::read("/bin/sh").unwrap(), 0o755),
        ],
        text: vec!["bin/tool".into()],
    };
    let mut app = Node::new("app", "1.0", "appaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    app.deps.push(serde_json::json!({
        "name": "tool", "hash": tool.hash,
        "parameters": {"deptypes": ["link"], "virtuals": []}
    }));
    let app_pkg = Package {
        node: app,
        dag: vec![tool.clone()],
        files: vec![("share/readme".into(), b"app\n".to_vec(), 0o644)],
        text: vec!["share/missing".into()],
    };
    let root = t.path().join("cache");
    write_cache(&root, &[tool_pkg, app_pkg]);
    let cache = format!("file://{}", root.display());

    // tool alone installs and brings sbang.
    let ok = t.path().join("ok");
    let (code, stdout) = install(t.path(), &cache, "tool", &ok);
    assert_eq!(code, 0, "{stdout}");
    assert!(ok.join("bin/sbang").is_file());

    let prefix = t.path().join("p");
    let (code, stdout) = install(t.path(), &cache, "app", &prefix);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        error_line(&stdout).contains("\"share/missing\", which is not in the package"),
        "{stdout}"
    );
    assert!(!prefix.join(tool.rel_prefix()).exists(), "tool was removed");
    assert!(!prefix.join("bin").exists(), "sbang and bin/ were removed");
}

#[test]
fn the_sbang_script_is_posix_sh_shellcheck_clean_and_explains_a_bad_script() {
    let sbang = crate::common::repo_root().join("src/install/sbang.sh");
    crate::common::assert_posix_sh(&sbang);
    // A script whose second line names no interpreter: exit 127, saying why.
    let t = tempfile::tempdir().unwrap();
    let bad = t.path().join("bad");
    std::fs::write(
        &bad,
        format!("#!/bin/sh {}\necho no interpreter\n", sbang.display()),
    )
    .unwrap();
    let out = Command::new("sh").arg(&sbang).arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(127));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("its second line names no interpreter"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // No script at all: a usage message.
    let out = Command::new("sh").arg(&sbang).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage: sbang"));
}

#[test]
fn index_records_without_a_binary_need_not_be_installable_nodes() {
    let t = tempfile::tempdir().unwrap();
    let cache = two_compilers(t.path());
    // A record Spack might list for a dependency it has no binary of, without arch or version.
    edit_index(&t.path().join("cache"), |db| {
        db.replacen(
            "\"installs\":{",
            "\"installs\":{\"weirdweirdweirdweirdweirdweirdwe\":{\"spec\":{\"name\":\"weird\",\"hash\":\"weirdweirdweirdweirdweirdweirdwe\"},\"ref_count\":0,\"in_buildcache\":false},",
            1,
        )
    });
    let prefix = t.path().join("p");
    let (code, stdout) = install(t.path(), &cache, "hello%gcc@13.4.0", &prefix);
    assert_eq!(code, 0, "{stdout}");
    assert_eq!(run_hello(&prefix, HELLO13), "hello built with gcc 13.4.0\n");
}
