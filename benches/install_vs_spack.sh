#!/usr/bin/env bash
# test-install against `spack install --cache-only`, in one run, on one buildcache that real
# Spack 1.0.0 (the vendored one, scripts/setup-spack) built and pushed:
#
#  - two packages with `has_code = False` (benches/install_vs_spack/) that compile 40 + 5 shared
#    libraries and 45 programs with the host gcc, RPATHs and embedded C strings naming their
#    prefixes, 1,500 text files naming them, 20 scripts whose padded shebangs Spack puts through
#    sbang, and 24 MiB of incompressible data; installed into a padded tree (padded_length 128,
#    as our builds) and pushed signed with the fixture key;
#  - BENCH_ROUNDS rounds (default 5), each installing with both tools into fresh roots of equal
#    length, in alternating order; wall time and peak RSS of every round from /usr/bin/time;
#  - after the rounds, the two trees of the last round compared file for file once each root is
#    replaced by a placeholder (Spack's own database, `<root>/.spack-db`, left out);
#  - then (BENCH_BIG_TARBALL=0 skips it) test-install --tarball on a 2 GiB tarball of
#    incompressible data, peak RSS against the 256 MiB goal.
#
# Run from the repository with a release build: `cargo build --release --bin test-install
# --bin tarball-publish && benches/install_vs_spack.sh`. Prints a Markdown report on stdout.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
rounds=${BENCH_ROUNDS:-5}
target=${CARGO_TARGET_DIR:-$repo/target}
ti=$target/release/test-install
tp=$target/release/tarball-publish
spack=$repo/.spack/spack-1.0.0/bin/spack
builtin=$repo/.spack/spack-packages-v2025.07.0/repos/spack_repo/builtin
venv=${SLURM_FACTORY_VENV:-$repo/.venv}
keys=$repo/tests/fixtures/spack-v3/keys
fpr=1A00B8893F4FAE1A76DB389DE145321FBC9F04BD
for f in "$ti" "$tp" "$spack" "$venv/bin/python" /usr/bin/time; do
  [ -x "$f" ] || { echo "missing $f (release build, scripts/setup-spack)" >&2; exit 1; }
done
# BENCH_WORK=<dir> keeps the work directory and reuses the buildcache built there before.
work=${BENCH_WORK:-$(mktemp -d /tmp/sf-bench.XXXXXX)}
mkdir -p "$work"
[ -n "${BENCH_WORK:-}" ] || trap 'rm -rf "$work"' EXIT

export SPACK_PYTHON=$venv/bin/python HOME=$work/home SPACK_USER_CONFIG_PATH=$work/home/.spack \
  SPACK_USER_CACHE_PATH=$work/home/cache
mkdir -p "$HOME/.spack"
[ ! -d "$work/r" ] || chmod -R u+w "$work/r"
cat > "$HOME/.spack/repos.yaml" <<YAML
repos:
  bench: $repo/benches/install_vs_spack/spack_repo/bench
  builtin: $builtin
YAML
cat > "$HOME/.spack/config.yaml" <<YAML
config:
  install_tree:
    root: $work/build/store
    padded_length: 128
  build_stage: [$work/stage]
YAML

log() { echo "$*" >&2; }
mirror=$work/mirror
if [ -d "$mirror/v3" ]; then
  log "==> reusing the buildcache in $mirror (BENCH_WORK)"
else
  log "==> building the packages with Spack (padded install tree) and pushing them signed"
  "$spack" gpg trust "$keys/demo-signer.sec.asc" >&2
  "$spack" install --no-check-signature bench.bench-app target=x86_64_v2 >&2
  "$spack" mirror add --signed bench "file://$mirror" >&2
  "$spack" buildcache push --key "$fpr" --update-index bench bench.bench-app >&2
fi
rm -rf "$work/r" "$work/big"
files=$(find "$work/build/store" -path '*/.spack' -prune -o -type f -print | wc -l)
elves=$(find "$work/build/store" -path '*/.spack' -prune -o -type f -print0 \
  | xargs -0 -n 200 file -N | grep -c ': ELF' || true)
blobs=$(du -sb "$mirror/blobs" | cut -f1)

# Fresh roots of equal length for both tools: <work>/r/s<i> and <work>/r/o<i>.
declare -a s_wall s_rss o_wall o_rss
one() { # tool round root
  local tool=$1 root=$3 t
  t=$work/time.$tool.$2
  if [ "$tool" = spack ]; then
    /usr/bin/time -f '%e %M' -o "$t" "$spack" -c "config:install_tree:root:$root" \
      -c "config:install_tree:padded_length:0" install --cache-only bench.bench-app \
      target=x86_64_v2 >"$work/log.$tool.$2" 2>&1
  else
    /usr/bin/time -f '%e %M' -o "$t" "$ti" --buildcache "file://$mirror" --spec bench-app \
      --prefix "$root" --trusted-key "$keys/demo-signer.pub.asc" >"$work/log.$tool.$2" 2>&1
  fi || { log "$tool round $2 failed:"; tail -20 "$work/log.$tool.$2" >&2; exit 1; }
  cat "$t"
}
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for i in $(seq 1 "$rounds"); do
  sync
  if [ $((i % 2)) = 1 ]; then order="spack ours"; else order="ours spack"; fi
  for tool in $order; do
    if [ "$tool" = spack ]; then
      read -r w m < <(one spack "$i" "$work/r/s$i")
      s_wall[i]=$w; s_rss[i]=$m
    else
      read -r w m < <(one ours "$i" "$work/r/o$i")
      o_wall[i]=$w; o_rss[i]=$m
    fi
  done
  log "round $i: spack ${s_wall[$i]} s ${s_rss[$i]} KiB, test-install ${o_wall[$i]} s ${o_rss[$i]} KiB"
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# The trees of the last round, file for file: type, mode, symlink target, bytes with the
# root replaced. Known and expected differences, not compared: the setgid bit Spack's
# permissions hook puts on every directory (and on sbang), `config:allow_sgid`; the content of
# `.spack/install_times.json` (each tool's own timings); the content of `bin/sbang` (Spack
# copies its own script, test-install writes its POSIX one).
compare() { # root
  local root=$1
  (cd "$root" && find . -path ./.spack-db -prune -o -print | LC_ALL=C sort | while IFS= read -r p; do
    mode=$(printf '%o' $((0$(stat -c %a "$p") & 0777)))
    if [ -L "$p" ]; then
      printf '%s link %s\n' "$p" "$(readlink "$p" | sed "s|$root|@ROOT@|g")"
    elif [ -d "$p" ]; then
      printf '%s dir %s\n' "$p" "$mode"
    else
      case $p in
        */.spack/install_times.json|./bin/sbang) sum="(not compared)";;
        *) sum=$(sed "s|$root|@ROOT@|g" "$p" | sha256sum | cut -c1-16);;
      esac
      printf '%s file %s %s\n' "$p" "$mode" "$sum"
    fi
  done)
}
compare "$work/r/s$rounds" > "$work/tree.spack"
compare "$work/r/o$rounds" > "$work/tree.ours"
if diff -u "$work/tree.spack" "$work/tree.ours" > "$work/tree.diff"; then
  same="identical: $(wc -l < "$work/tree.ours") paths, every file's bytes with the root replaced (but for the setgid bit, install_times.json and sbang, see above)"
else
  same="DIFFERENT: $(grep -c '^[-+][^-+]' "$work/tree.diff") lines differ"
  head -40 "$work/tree.diff" >&2
fi

best() { printf '%s\n' "$@" | sort -g | head -1; }
bs=$(best "${s_wall[@]}"); bo=$(best "${o_wall[@]}")
speedup=$(awk -v s="$bs" -v o="$bo" 'BEGIN{printf "%.1f", s/o}')

echo "### test-install vs \`spack install --cache-only\` ($(date -u +%F))"
echo
echo "$(uname -sr) $(uname -m), $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)),"
echo "$(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM; Spack 1.0.0 (vendored), test-install release build."
echo "Load average before the rounds: $load_before; after: $load_after."
echo "Cache: 2 specs, $files files, $elves ELF files, $((blobs / 1048576)) MiB of blobs."
echo
echo "| round | \`spack install --cache-only\` | peak RSS | test-install | peak RSS | speed-up |"
echo "|---:|---:|---:|---:|---:|---:|"
for i in $(seq 1 "$rounds"); do
  echo "| $i | ${s_wall[$i]} s | $((s_rss[i] / 1024)) MiB | ${o_wall[$i]} s | $((o_rss[i] / 1024)) MiB | $(awk -v s="${s_wall[$i]}" -v o="${o_wall[$i]}" 'BEGIN{printf "%.1f×", s/o}') |"
done
echo
echo "Best of $rounds: Spack $bs s, test-install $bo s: **${speedup}×**. Trees: $same."

if [ "${BENCH_BIG_TARBALL:-1}" = 1 ]; then
  log "==> a 2 GiB tarball of incompressible data through test-install --tarball"
  view=$work/big/view
  mkdir -p "$view/bin" "$view/share"
  head -c $((2 << 30)) /dev/urandom > "$view/share/blob.bin"
  printf '#!/bin/sh\necho "slurm 25.11.0"\n' > "$view/bin/sinfo"
  chmod 755 "$view/bin/sinfo"
  GPG_PRIVATE_KEY=$(cat "$keys/demo-signer.sec.asc") SOURCE_DATE_EPOCH=1700000000 \
    "$tp" --view "$view" --build-prefix /slurm-factory/bench/install --slurm-version 25.11 \
    --compiler-version 13.4.0 --output "$work/big/out" >&2
  rm -rf "$work/big/view"
  tb=$(ls "$work"/big/out/*.tar.gz)
  size=$(stat -c %s "$tb")
  /usr/bin/time -f '%e %M' -o "$work/time.big" "$ti" --tarball "$tb" --prefix "$work/big/p" \
    --trusted-key "$keys/demo-signer.pub.asc" > "$work/log.big" 2>&1 \
    || { tail -20 "$work/log.big" >&2; exit 1; }
  read -r bw bm < "$work/time.big"
  verdict=$([ "$bm" -lt $((256 * 1024)) ] && echo "under the 256 MiB goal" || echo "OVER the 256 MiB goal")
  echo
  echo "test-install --tarball of a $((size / 1048576)) MiB tarball (2 GiB of /dev/urandom inside): $bw s, peak RSS **$((bm / 1024)) MiB**, $verdict."
fi
