#!/usr/bin/env bash
# Installs the slurm-factory binaries for a composite action of this repository and prints
# `bin_dir=<dir>` to $GITHUB_OUTPUT. Shared by every actions/<name>/action.yml.
#
# Resolution order, first match wins:
#  1. SLURM_FACTORY_BIN_DIR is set: use the binaries there as they are (local replay with act,
#     development). $SLURM_FACTORY_BIN_DIR/$SF_BINARY must be executable.
#  2. INPUT_BUILD_FROM_SOURCE=true (this repository's own workflows): build from source.
#  3. actions/checksums.txt at this action's ref has an entry for
#     slurm-factory-v<version>-<target>.tar.gz, where <version> is package.version of the
#     Cargo.toml at this ref and <target> comes from RUNNER_OS/RUNNER_ARCH: download that asset
#     from the v<version> GitHub release over HTTPS only, verify its SHA-256, unpack it.
#  4. No entry for that version and target (no prebuilt binary exists for this ref): build from
#     source with `cargo build --locked --release` in the action's checkout.
# Everything else fails closed: an unsupported runner, a missing checksums.txt, a malformed or
# duplicated entry, a missing curl/sha256sum/tar/cargo, a failed download, a checksum mismatch.
set -euo pipefail

die() {
  echo "::error title=slurm-factory install::$*"
  exit 1
}

set_output() {
  if [ -n "${GITHUB_OUTPUT:-}" ]; then
    printf '%s=%s\n' "$1" "$2" >> "$GITHUB_OUTPUT"
  else
    printf '%s=%s\n' "$1" "$2"
  fi
}

need() {
  command -v "$1" > /dev/null 2>&1 || die "$1 is required to $2 but is not installed on this runner"
}

action_path=${GITHUB_ACTION_PATH:?GITHUB_ACTION_PATH is not set: run this script from a composite action}
binary=${SF_BINARY:?SF_BINARY (the binary the action runs) is not set}
root=$(cd "$action_path/../.." && pwd)

case "$binary" in
  *[!a-z-]* | "") die "SF_BINARY=$binary is not a slurm-factory binary name" ;;
esac

# 1. Explicit binaries (act replay, development).
if [ -n "${SLURM_FACTORY_BIN_DIR:-}" ]; then
  [ -x "$SLURM_FACTORY_BIN_DIR/$binary" ] \
    || die "SLURM_FACTORY_BIN_DIR=$SLURM_FACTORY_BIN_DIR has no executable $binary: build it (cargo build --bins) or unset the variable"
  echo "using $binary from SLURM_FACTORY_BIN_DIR=$SLURM_FACTORY_BIN_DIR"
  set_output bin_dir "$SLURM_FACTORY_BIN_DIR"
  exit 0
fi

build_from_source() {
  need cargo "build slurm-factory from source ($1)"
  local target_dir="${CARGO_TARGET_DIR:-$root/target}"
  echo "::group::cargo build --locked --release ($1)"
  (cd "$root" && cargo build --locked --release --bins)
  echo "::endgroup::"
  [ -x "$target_dir/release/$binary" ] || die "cargo build finished but $target_dir/release/$binary does not exist"
  set_output bin_dir "$target_dir/release"
  exit 0
}

# 2. This repository's own workflows.
case "${INPUT_BUILD_FROM_SOURCE:-false}" in
  true | True | TRUE) build_from_source "build_from_source is true" ;;
  false | False | FALSE | "") ;;
  *) die "build_from_source must be true or false, got ${INPUT_BUILD_FROM_SOURCE}" ;;
esac

case "${RUNNER_OS:-}/${RUNNER_ARCH:-}" in
  Linux/X64) target=x86_64-unknown-linux-musl ;;
  Linux/ARM64) target=aarch64-unknown-linux-musl ;;
  *) die "no slurm-factory build for RUNNER_OS=${RUNNER_OS:-unset} RUNNER_ARCH=${RUNNER_ARCH:-unset}: only Linux on X64 and ARM64 is supported" ;;
esac

version=$(sed -n 's/^version = "\([^"]*\)"$/\1/p' "$root/Cargo.toml" | head -n 1)
case "$version" in
  "" | *[!0-9A-Za-z.+-]*) die "cannot read a package version from $root/Cargo.toml" ;;
esac
asset="slurm-factory-v${version}-${target}.tar.gz"
sums="$root/actions/checksums.txt"
[ -f "$sums" ] || die "$sums is missing: this ref of the actions cannot verify a download"

expected=$(awk -v a="$asset" '$1 !~ /^#/ && ($2 == a || $2 == "*" a) { print $1 }' "$sums")
count=0
if [ -n "$expected" ]; then
  count=$(printf '%s\n' "$expected" | wc -l)
fi
case "$count" in
  0) build_from_source "no prebuilt $asset is listed in actions/checksums.txt at this ref" ;;
  1) ;;
  *) die "actions/checksums.txt lists $asset more than once" ;;
esac
case "$expected" in
  *[!0-9a-f]*) die "the checksum of $asset in actions/checksums.txt is not lowercase hex" ;;
esac
[ "${#expected}" -eq 64 ] || die "the checksum of $asset in actions/checksums.txt is not a SHA-256"

# 3. Prebuilt, verified release asset.
dest="${RUNNER_TEMP:?RUNNER_TEMP is not set}/slurm-factory-v${version}-${target}"
if [ -f "$dest/.sha256" ] && [ "$(cat "$dest/.sha256")" = "$expected" ] && [ -x "$dest/$binary" ]; then
  echo "reusing verified $asset in $dest"
  set_output bin_dir "$dest"
  exit 0
fi
need curl "download $asset"
need sha256sum "verify $asset"
need tar "unpack $asset"
repository="${SF_ACTION_REPOSITORY:-}"
[ -n "$repository" ] || repository="${GITHUB_ACTION_REPOSITORY:-vantagecompute/slurm-factory}"
case "$repository" in
  */* ) ;;
  *) die "cannot tell which repository to download $asset from (got '$repository')" ;;
esac
server="${GITHUB_SERVER_URL:-https://github.com}"
url="$server/$repository/releases/download/v${version}/$asset"
tmp=$(mktemp -d "${RUNNER_TEMP}/slurm-factory-download.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "downloading $url"
curl --proto '=https' --tlsv1.2 -fsSL --retry 3 -o "$tmp/$asset" "$url" \
  || die "cannot download $url"
actual=$(sha256sum "$tmp/$asset" | cut -d ' ' -f 1)
if [ "$actual" != "$expected" ]; then
  die "checksum mismatch for $asset: expected $expected (actions/checksums.txt), got $actual; refusing to run it"
fi
rm -rf "$dest"
mkdir -p "$dest"
tar -xzf "$tmp/$asset" -C "$dest"
[ -x "$dest/$binary" ] || die "$asset does not contain $binary"
printf '%s\n' "$expected" > "$dest/.sha256"
echo "installed verified $asset"
set_output bin_dir "$dest"
