//! Spack's prefix replacement rules (`relocate_text.py` in Spack 1.0), checked on the cases
//! Spack's own test suite uses to pin the behaviour down, plus the build info of the real
//! fixture tarballs.

use slurm_factory::relocate::{BuildInfo, PrefixMap};

fn map(pairs: &[(&str, &str)]) -> PrefixMap {
    PrefixMap::new(
        pairs
            .iter()
            .map(|(o, n)| (o.as_bytes().to_vec(), n.as_bytes().to_vec()))
            .collect(),
    )
}

fn bin(pairs: &[(&str, &str)], before: &[u8]) -> Result<Vec<u8>, String> {
    map(pairs)
        .replace_binary(before, "f")
        .map(|o| o.unwrap_or_else(|| before.to_vec()))
        .map_err(|e| e.to_string())
}

fn text(pairs: &[(&str, &str)], before: &str) -> String {
    let out = map(pairs).replace_text(before.as_bytes()).unwrap();
    String::from_utf8(out.unwrap_or_else(|| before.as_bytes().to_vec())).unwrap()
}

const SPECIFIC: (&str, &str) = ("/old-spack/opt/specific-package", "/first/specific-package");

#[test]
fn binary_replacement_pads_with_slashes_and_respects_order() {
    let m = [SPECIFIC, ("/old-spack/opt", "/sec/spack/opt")];
    assert_eq!(
        bin(
            &m,
            b"Binary with /old-spack/opt/specific-package and /old-spack/opt"
        )
        .unwrap(),
        b"Binary with /////////first/specific-package and /sec/spack/opt"
    );
    assert_eq!(
        bin(
            &m,
            b"Binary with /old-spack/opt/specific-package\0 and /old-spack/opt\0"
        )
        .unwrap(),
        b"Binary with /////////first/specific-package\0 and /sec/spack/opt\0"
    );
    // The shorter prefix first: it wins.
    let m = [("/old-spack/opt", "/s/spack/opt"), SPECIFIC];
    assert_eq!(
        bin(
            &m,
            b"Binary with /old-spack/opt/specific-package\0 and /old-spack/opt\0"
        )
        .unwrap(),
        b"Binary with ///s/spack/opt/specific-package\0 and ///s/spack/opt\0"
    );
}

#[test]
fn binary_replacement_guards_c_string_suffix_aliasing() {
    let old = "/old-spack/opt/specific-package";
    let before = b"Binary with /old-spack/opt/specific-package/sub\0 data";
    // A NUL inside the window, common suffix long enough: pad.
    assert_eq!(
        bin(&[(old, "/opt/specific-XXXXage")], before).unwrap(),
        b"Binary with ///////////opt/specific-XXXXage/sub\0 data"
    );
    // Suffix too short, but shortening spares more than 7 bytes: a new NUL.
    assert_eq!(
        bin(&[(old, "/opt/specific-XXXXXge")], before).unwrap(),
        b"Binary with /opt/specific-XXXXXge/sub\0ckage/sub\0 data"
    );
    assert_eq!(
        bin(&[(old, "/spack/specific-XXXXXge")], before).unwrap(),
        b"Binary with /spack/specific-XXXXXge/sub\0age/sub\0 data"
    );
    // Neither: refused, naming the C string.
    let e = bin(&[(old, "/snacks/specific-XXXXXge")], before).unwrap_err();
    assert!(
        e.contains("in the C string \"/old-spack/opt/specific-package/sub\""),
        "{e}"
    );
    // Same length, common suffix long enough.
    assert_eq!(
        bin(
            &[("pkg-gwixwaalgczp6", "pkg-zkesfralgczp6")],
            b"Binary with pkg-gwixwaalgczp6/config\0 data"
        )
        .unwrap(),
        b"Binary with pkg-zkesfralgczp6/config\0 data"
    );
    let e = bin(
        &[("pkg-gwixwaxlgczp6", "pkg-zkesfrzlgczp6")],
        b"Binary with pkg-gwixwaxlgczp6\0 data",
    )
    .unwrap_err();
    assert!(e.contains("cannot replace"), "{e}");
    // The first NUL in the window counts, not the last.
    let e = bin(
        &[("pkg-abcdef", "pkg-xyzabc")],
        b"Binary with pkg-abcdef\0/xx\0",
    )
    .unwrap_err();
    assert!(e.contains("in the C string \"pkg-abcdef\""), "{e}");
    // Longer: refused.
    let e = bin(&[("/short", "/much/longer")], b"x /short\0").unwrap_err();
    assert!(
        e.contains("because the new prefix is longer") && e.contains("padded_length"),
        "{e}"
    );
}

#[test]
fn text_replacement_skips_prefixes_inside_other_paths() {
    assert_eq!(
        text(
            &[
                ("/first/prefix", "/first-replacement/prefix"),
                ("/second/prefix", "/second-replacement/prefix")
            ],
            "Example: /first/prefix/subdir and /second/prefix/subdir"
        ),
        "Example: /first-replacement/prefix/subdir and /second-replacement/prefix/subdir"
    );
    assert_eq!(
        text(
            &[
                ("/replace/in/order", "/first"),
                ("/replace/in", "/second"),
                ("/replace", "/third")
            ],
            "/replace/in/order/x /replace/in/y /replace/z"
        ),
        "/first/x /second/y /third/z"
    );
    assert_eq!(
        text(
            &[
                ("/replace", "/third"),
                ("/replace/in", "/second"),
                ("/replace/in/order", "/first")
            ],
            "/replace/in/order/x /replace/in/y /replace/z"
        ),
        "/third/in/order/x /third/in/y /third/z"
    );
    let keep = "/dont/replace/my/prefix #!/dont/replace/my/prefix";
    assert_eq!(text(&[("/my/prefix", "/replacement")], keep), keep);
    assert_eq!(
        text(
            &[("/my/prefix", "/replacement")],
            "Install path: /my/prefix."
        ),
        "Install path: /replacement."
    );
    assert_eq!(
        text(&[("/my/prefix", "/replacement")], "#!/my/prefix"),
        "#!/replacement"
    );
    // A word character before the prefix: `x-/my/prefix` counts as not inside a path.
    assert_eq!(
        text(&[("/my/prefix", "/r")], "x-/my/prefix/bin"),
        "x-/r/bin"
    );
    // Regex metacharacters in a prefix are literal.
    assert_eq!(
        text(
            &[("/safe/[a-z]", "/ok")],
            "don't match /safe/a/path but do /safe/[a-z]/file"
        ),
        "don't match /safe/a/path but do /ok/file"
    );
}

#[test]
fn identity_pairs_are_dropped() {
    assert!(map(&[("/hello", "/hello"), ("/world", "/world")]).is_empty());
}

#[test]
fn the_fixture_build_info_parses_and_maps_in_spack_order() {
    let gz = std::fs::read(crate::common::repo_root().join(
        "tests/fixtures/spack-v3/signed/blobs/sha256/96/96a55c590468f224a92393a4a5f5afe8247c27656ad94ade35768a3da116e366",
    ))
    .unwrap();
    let found = slurm_factory::install::extract::inspect_spack_tarball(
        flate2::read::GzDecoder::new(gz.as_slice()),
        Default::default(),
    )
    .unwrap();
    let info = BuildInfo::parse(&found.buildinfo).unwrap();
    assert_eq!(info.relocate_binaries, ["bin/demo-app"]);
    assert_eq!(info.relocate_textfiles, ["bin/demo-app.sh"]);
    assert_eq!(info.relocate_links, ["bin/abs-link"]);
    assert!(info.hardlinks_deduped && !info.relative_rpaths);
    assert_eq!(info.buildpath.len(), 128, "padded_length: 128");
    let new_root = std::path::Path::new("/opt/sw");
    let prefixes = [
        ("resh3sdm7oulbae23jllsxfemfp24cba", "/opt/sw/a"),
        ("or7dti47ajgrd2y5bgs2dujuath2dz3p", "/opt/sw/l"),
    ]
    .into_iter()
    .map(|(h, p)| (h.to_string(), std::path::PathBuf::from(p)))
    .collect();
    let m = PrefixMap::for_spec(&info, &prefixes, new_root, &new_root.join("bin/sbang")).unwrap();
    let olds: Vec<String> = m
        .pairs()
        .iter()
        .map(|(o, _)| String::from_utf8(o.clone()).unwrap())
        .collect();
    assert_eq!(olds[0], "/tmp/research/spack/demo/store/bin/sbang");
    assert!(
        olds[1].ends_with("/linux-x86_64_v4/demo-lib-1.0-or7dti47ajgrd2y5bgs2dujuath2dz3p"),
        "{olds:?}"
    );
    assert!(
        olds[2].ends_with("/linux-x86_64_v4/demo-app-2.0-resh3sdm7oulbae23jllsxfemfp24cba"),
        "{olds:?}"
    );
    assert_eq!(olds[3], info.buildpath);
    // Hostile build info: a relative prefix or a missing buildpath is refused.
    assert!(BuildInfo::parse(b"buildpath: relative/path\n").is_err());
    assert!(BuildInfo::parse(b"relocate_textfiles: []\n").is_err());
    let bad = BuildInfo::parse(b"buildpath: /b\nhash_to_prefix: {h: rel}\n").unwrap();
    let e = PrefixMap::for_spec(
        &bad,
        &[("h".to_string(), "/x".into())].into_iter().collect(),
        new_root,
        new_root,
    )
    .unwrap_err();
    assert!(e.to_string().contains("not an absolute path"), "{e}");
}

#[test]
fn build_info_lists_cannot_reach_outside_the_prefix() {
    use slurm_factory::relocate::relocate_package;
    let t = tempfile::tempdir().unwrap();
    let outside = t.path().join("outside.txt");
    std::fs::write(&outside, "/old/store/pkg\n").unwrap();
    let prefix = t.path().join("pkg");
    std::fs::create_dir_all(prefix.join("bin")).unwrap();
    std::os::unix::fs::symlink(&outside, prefix.join("bin/x")).unwrap();
    std::os::unix::fs::symlink(t.path(), prefix.join("up")).unwrap();
    let m = map(&[("/old/store", "/new")]);
    for (list, want) in [
        (
            "relocate_textfiles: [bin/x]",
            "as a text file, but it is not one",
        ),
        ("relocate_textfiles: [../outside.txt]", "`..`"),
        ("relocate_textfiles: [/etc/passwd]", "absolute path"),
        (
            "relocate_textfiles: [up/outside.txt]",
            "refusing to follow it",
        ),
        (
            "relocate_binaries: [bin/x]",
            "as a binary, but it is not one",
        ),
        ("relocate_links: [bin]", "as a symlink, but it is not one"),
    ] {
        let info = BuildInfo::parse(
            format!("buildpath: /old/store\nhash_to_prefix: {{}}\n{list}\n").as_bytes(),
        )
        .unwrap();
        let e = format!("{:#}", relocate_package(&prefix, &info, &m).unwrap_err());
        assert!(e.contains(want), "{list}: {e}");
    }
    assert_eq!(
        std::fs::read_to_string(&outside).unwrap(),
        "/old/store/pkg\n",
        "untouched"
    );
}
