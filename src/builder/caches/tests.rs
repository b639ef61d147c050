//! The cache directory engine on a real file system: atomic no-replace inserts, LRU eviction
//! under the cap, links and FIFOs never followed, opened or promoted.

use super::sources::{named_sha256, promote};
use super::*;
use sha2::{Digest, Sha256};

fn sha(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// Spack's layout of a checksummed source: `_source-cache/archive/<2 hex>/<sha256>.<ext>`.
fn spack_path(body: &[u8]) -> String {
    let h = sha(body);
    format!("_source-cache/archive/{}/{h}.tar.gz", &h[..2])
}

fn put(root: &Path, rel: &str, body: &[u8]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, body).unwrap();
}

fn set_mtime(path: &Path, secs_ago: u64) {
    let t = SystemTime::now() - Duration::from_secs(secs_ago);
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

#[test]
fn settings_resolve_in_order_and_off_turns_them_off() {
    let cat = Caches::default();
    let r = Runner::from_vars([
        ("RUNNER_TOOL_CACHE", "/opt/hostedtoolcache"),
        ("HOME", "/home/u"),
    ]);
    let s = CacheSettings::resolve(None, &cat, &r).unwrap();
    assert_eq!(
        s.root,
        Some(PathBuf::from("/opt/hostedtoolcache/slurm-factory"))
    );
    assert_eq!(s.source_max, 50 << 30);
    let home = Runner::from_vars([("HOME", "/home/u")]);
    assert_eq!(
        CacheSettings::resolve(None, &cat, &home).unwrap().root,
        Some(PathBuf::from("/home/u/.cache/slurm-factory"))
    );
    let mut pinned = cat.clone();
    pinned.dir = Some("/srv/caches".into());
    assert_eq!(
        CacheSettings::resolve(None, &pinned, &r).unwrap().root,
        Some(PathBuf::from("/srv/caches"))
    );
    let explicit = CacheSettings::resolve(Some(Path::new("/x/y")), &pinned, &r).unwrap();
    assert_eq!(explicit.root, Some(PathBuf::from("/x/y")));
    let off = CacheSettings::resolve(Some(Path::new("off")), &pinned, &r).unwrap();
    assert_eq!(off.root, None);
    let mut disabled = cat.clone();
    disabled.enabled = false;
    assert_eq!(
        CacheSettings::resolve(None, &disabled, &r).unwrap().root,
        None
    );
    let err = CacheSettings::resolve(Some(Path::new("rel/dir")), &cat, &r).unwrap_err();
    assert!(err.to_string().contains("absolute path"), "{err}");
}

#[test]
fn inserts_never_replace_and_leave_no_temporary_file() {
    let d = tempfile::tempdir().unwrap();
    let c = CacheDir::open(d.path(), "c", 1 << 30).unwrap();
    let mut p = c.begin("a/b/file").unwrap();
    p.file().write_all(b"first").unwrap();
    assert_eq!(p.commit().unwrap(), Inserted::New);
    let mut p = c.begin("a/b/file").unwrap();
    p.file().write_all(b"second").unwrap();
    assert_eq!(p.commit().unwrap(), Inserted::Existed);
    assert_eq!(std::fs::read(c.path().join("a/b/file")).unwrap(), b"first");
    // Dropped before commit: nothing stays behind.
    let mut p = c.begin("a/b/other").unwrap();
    p.file().write_all(b"partial").unwrap();
    drop(p);
    let names: Vec<_> = std::fs::read_dir(c.path().join("a/b"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["file"]);
    for bad in [
        "../x",
        "a/../../x",
        "/etc/passwd",
        "a//b",
        ".lock",
        "a/.hidden",
        "",
    ] {
        assert!(c.begin(bad).is_err(), "{bad:?} accepted");
    }
}

/// (d) Past its cap, the least recently used entries go first; using an entry refreshes it.
#[test]
fn the_cap_evicts_the_least_recently_used_entries() {
    let d = tempfile::tempdir().unwrap();
    let c = CacheDir::open(d.path(), "c", 3000).unwrap();
    for (i, age) in [(1, 400), (2, 300), (3, 200), (4, 100)] {
        put(c.path(), &format!("e{i}"), &[b'x'; 1000]);
        set_mtime(&c.path().join(format!("e{i}")), age);
    }
    // e1 is the oldest by creation but was just used: e2 goes first, then e3.
    assert!(c.touch("e1").unwrap());
    put(c.path(), "e5", &[b'x'; 1000]);
    let r = c.prune().unwrap();
    let evicted: Vec<&str> = r.evicted.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(evicted, ["e2", "e3"]);
    assert_eq!(r.kept, (3, 3000));
    for keep in ["e1", "e4", "e5"] {
        assert!(c.path().join(keep).is_file(), "{keep}");
    }
    // Within the cap nothing goes.
    assert!(c.prune().unwrap().evicted.is_empty());
}

/// (e) Links and FIFOs planted in the shared cache or in a leg's offer are never followed,
/// opened, counted, evicted through, or promoted.
#[test]
fn links_and_fifos_are_never_followed_or_promoted() {
    let d = tempfile::tempdir().unwrap();
    let outside = d.path().join("outside");
    put(&outside, "secret", b"do not touch");
    put(&outside, "big", &[b'x'; 5000]);
    let shared = CacheDir::open(&d.path().join("root"), "s", 1000).unwrap();
    // Planted in the shared cache: a link to a directory outside, a link to a file, a FIFO.
    std::os::unix::fs::symlink(&outside, shared.path().join("_source-cache")).unwrap();
    std::os::unix::fs::symlink(outside.join("secret"), shared.path().join("secret")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        shared.path().join("fifo"),
        FileType::Fifo,
        Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    let r = shared.prune().unwrap();
    assert!(r.evicted.is_empty(), "{r:?}");
    assert_eq!(r.kept, (0, 0));
    let mut refused: Vec<(&str, &str)> = r.refused.iter().map(|(p, k)| (p.as_str(), *k)).collect();
    refused.sort();
    assert_eq!(
        refused,
        [
            ("_source-cache", "a symbolic link"),
            ("fifo", "a FIFO (named pipe)"),
            ("secret", "a symbolic link")
        ]
    );
    assert!(!shared.touch("secret").unwrap());
    assert!(shared.open_entry("fifo").unwrap().is_none());
    assert_eq!(
        std::fs::read(outside.join("secret")).unwrap(),
        b"do not touch"
    );
    assert!(outside.join("big").is_file());

    // A leg offers a good source, a link to a file outside, and a FIFO (which would hang a
    // reader that opened it blocking), and a source that goes through the planted link.
    let leg = d.path().join("leg");
    let good = b"source tarball";
    put(&leg, &spack_path(good), good);
    std::fs::create_dir_all(leg.join("_source-cache/archive/ff")).unwrap();
    std::os::unix::fs::symlink(
        outside.join("secret"),
        leg.join(format!(
            "_source-cache/archive/ff/{}.tar.gz",
            "f".repeat(64)
        )),
    )
    .unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        leg.join("pipe.tar.gz"),
        FileType::Fifo,
        Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    let p = promote(&leg, &shared, true).unwrap();
    assert!(p.added.is_empty(), "{p:?}");
    // The good file's path goes through the planted directory link: not written there.
    assert!(
        p.skipped.iter().any(|(r, _)| r == &spack_path(good)),
        "{p:?}"
    );
    assert!(
        p.skipped
            .iter()
            .any(|(r, w)| r.ends_with(".tar.gz") && w.contains("symbolic link"))
    );
    assert!(
        p.skipped
            .iter()
            .any(|(r, w)| r == "pipe.tar.gz" && w.contains("FIFO"))
    );
    assert!(!outside.join("_source-cache").exists());
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 2);

    // Without the planted link the good file is promoted, the others still are not.
    std::fs::remove_file(shared.path().join("_source-cache")).unwrap();
    let p = promote(&leg, &shared, true).unwrap();
    assert_eq!(p.added, [spack_path(good)]);
    assert_eq!(
        std::fs::read(shared.path().join(spack_path(good))).unwrap(),
        good
    );
    assert!(!shared.path().join("pipe.tar.gz").exists());
}

#[test]
fn only_whole_files_are_promoted() {
    let d = tempfile::tempdir().unwrap();
    let shared = CacheDir::open(d.path(), "s", 1 << 30).unwrap();
    let leg = d.path().join("leg");
    let whole = b"whole archive";
    put(&leg, &spack_path(whole), whole);
    // A copy cut short: its bytes do not have the digest its name says.
    let cut = spack_path(b"the full archive is longer");
    put(&leg, &cut, b"the full");
    // A source without a digest in its name (e.g. a git checkout archive).
    put(&leg, "_source-cache/git/x/abc123.tar.gz", b"git archive");
    assert_eq!(named_sha256(&spack_path(whole)), Some(&sha(whole)[..]));
    assert_eq!(named_sha256("_source-cache/git/x/abc123.tar.gz"), None);

    // A failed build: digest-named whole files only.
    let p = promote(&leg, &shared, false).unwrap();
    assert_eq!(p.added, [spack_path(whole)]);
    let why: Vec<&str> = p.skipped.iter().map(|(_, w)| w.as_str()).collect();
    assert!(why.iter().any(|w| w.contains("not the")), "{why:?}");
    assert!(why.iter().any(|w| w.contains("did not succeed")), "{why:?}");
    assert!(!shared.path().join(&cut).exists());
    // A successful build adds the other file; the first is already there.
    let p = promote(&leg, &shared, true).unwrap();
    assert_eq!(p.added, ["_source-cache/git/x/abc123.tar.gz"]);
    assert_eq!(p.reused, [spack_path(whole)]);
}

/// (b) Legs promoting into one cache at once (with pruning in between) all finish, and the
/// cache holds each file once, with its bytes.
#[test]
fn concurrent_promotions_keep_one_whole_copy_of_each_file() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("root");
    let bodies: Vec<Vec<u8>> = (0..24u8)
        .map(|i| vec![i; 200_000 + usize::from(i) * 1000])
        .collect();
    let legs: Vec<PathBuf> = (0..4)
        .map(|l| {
            let leg = d.path().join(format!("leg{l}"));
            // Every leg offers the shared files and one of its own.
            for b in &bodies {
                put(&leg, &spack_path(b), b);
            }
            let own = format!("own source of leg {l}").into_bytes();
            put(&leg, &spack_path(&own), &own);
            leg
        })
        .collect();
    std::thread::scope(|s| {
        for leg in &legs {
            let root = root.clone();
            s.spawn(move || {
                let shared = CacheDir::open(&root, SOURCES_DIR, 1 << 30).unwrap();
                let p = promote(leg, &shared, true).unwrap();
                assert!(p.skipped.is_empty(), "{p:?}");
                assert_eq!(p.added.len() + p.reused.len(), 25);
                shared.prune().unwrap();
            });
        }
    });
    let shared = CacheDir::open(&root, SOURCES_DIR, 1 << 30).unwrap();
    let w = walk(open_dir(shared.path()).unwrap().unwrap(), shared.path()).unwrap();
    assert!(w.hidden.is_empty() && w.refused.is_empty());
    assert_eq!(w.files.len(), 28);
    for f in &w.files {
        let bytes = std::fs::read(shared.path().join(&f.rel)).unwrap();
        assert_eq!(Some(&sha(&bytes)[..]), named_sha256(&f.rel), "{}", f.rel);
    }
}
