#!/usr/bin/env bash
# Installs the slurm-factory binary a composite action of this repository runs and writes
# `bin_dir=<dir>` to $GITHUB_OUTPUT. Shared by every actions/<name>/action.yml.
#
# Resolution order, first match wins:
#  1. SLURM_FACTORY_BIN_DIR is set: use the binaries there as they are (local replay with act,
#     development). $SLURM_FACTORY_BIN_DIR/$SF_BINARY must be executable.
#  2. INPUT_BINARIES names a directory (the artifact of a pipeline's binaries job): its SHA256SUMS
#     must list $SF_BINARY exactly once; the binary is copied to a private directory, its copy's
#     SHA-256 verified, and only then made executable.
#  3. INPUT_BUILD_FROM_SOURCE=true (this repository's plan jobs): build from source.
#  4. actions/checksums.txt at this action's ref has an entry for
#     slurm-factory-v<version>-<target>.tar.gz, where <version> is package.version of the
#     Cargo.toml at this ref and <target> comes from RUNNER_OS/RUNNER_ARCH: download that asset
#     from the v<version> GitHub release over HTTPS only, verify its SHA-256, unpack it. The
#     verified asset is kept next to the unpacked binaries; a later step reuses them only after
#     the asset's SHA-256 matches checksums.txt again and the binary's own SHA-256 matches the
#     copy inside the asset. SLURM_FACTORY_RELEASE_URL replaces the download base
#     (https://, or http:// to 127.0.0.1/localhost only: a mirror or a test's release server).
#  5. No entry for that version and target (no prebuilt binary exists for this ref): build from
#     source with `cargo build --locked --release` in the action's checkout.
# Everything else fails closed: an unsupported runner, a missing checksums.txt, a malformed or
# duplicated entry, a missing curl/sha256sum/tar/cargo, a failed download, a checksum mismatch.
#
# Runner protocol: every message goes through `log` or `die`, which escape %, CR and LF (as the
# runner's ActionCommand does), so no value can start a workflow command; outputs are written as
# heredoc records with a random delimiter, so no value can add an output.
set -euo pipefail

# Escapes a message for the runner: %, CR and LF (in that order, as gha.rs escape_data does).
escape() {
  local s=$1
  s=${s//'%'/%25}
  s=${s//$'\r'/%0D}
  s=${s//$'\n'/%0A}
  printf '%s' "$s"
}

# A plain log line. Escaped like a command's message, so it stays one line; a line that could
# still read as a command (`::` at its start, or the legacy `##[` anywhere) is printed inside a
# stop-commands window with a random token, as gha.rs does.
log() {
  local message token
  message=$(escape "$*")
  case "$message" in
    *'##['* | *'::'*)
      token=$(random_delimiter)
      printf '::stop-commands::%s\n%s\n::%s::\n' "$token" "$message" "$token"
      ;;
    *) printf '%s\n' "$message" ;;
  esac
}

die() {
  printf '::error title=slurm-factory install::%s\n' "$(escape "$*")"
  exit 1
}

random_delimiter() {
  local hex
  hex=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
  [ "${#hex}" -eq 32 ] || die "cannot read /dev/urandom for an output delimiter"
  printf 'ghadelimiter_%s' "$hex"
}

# Writes one output as `key<<DELIM`, value, `DELIM` (the runner's multi-line form).
set_output() {
  local key=$1 value=$2 delimiter
  delimiter=$(random_delimiter)
  case "$value" in
    *"$delimiter"*) die "the value of output $key contains its delimiter" ;;
  esac
  if [ -n "${GITHUB_OUTPUT:-}" ]; then
    printf '%s<<%s\n%s\n%s\n' "$key" "$delimiter" "$value" "$delimiter" >> "$GITHUB_OUTPUT"
  else
    log "$key=$value"
  fi
}

need() {
  command -v "$1" > /dev/null 2>&1 || die "$1 is required to $2 but is not installed on this runner"
}

sha256_of() {
  sha256sum -- "$1" | cut -d ' ' -f 1
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
  log "using $binary from SLURM_FACTORY_BIN_DIR=$SLURM_FACTORY_BIN_DIR"
  set_output bin_dir "$SLURM_FACTORY_BIN_DIR"
  exit 0
fi

# 2. The binaries job's artifact, verified against its SHA256SUMS.
if [ -n "${INPUT_BINARIES:-}" ]; then
  need sha256sum "verify $binary"
  sums="$INPUT_BINARIES/SHA256SUMS"
  [ -f "$sums" ] || die "input binaries=$INPUT_BINARIES has no SHA256SUMS: pass the directory the binaries job's artifact was downloaded to"
  expected=$(awk -v b="$binary" '$2 == b || $2 == "*" b { print $1 }' "$sums")
  case "$(printf '%s' "$expected" | grep -c '^' || true)" in
    1) ;;
    0) die "$sums does not list $binary" ;;
    *) die "$sums lists $binary more than once" ;;
  esac
  case "$expected" in
    *[!0-9a-f]*) die "the checksum of $binary in $sums is not lowercase hex" ;;
  esac
  [ "${#expected}" -eq 64 ] || die "the checksum of $binary in $sums is not a SHA-256"
  if [ ! -f "$INPUT_BINARIES/$binary" ] || [ -L "$INPUT_BINARIES/$binary" ]; then
    die "input binaries=$INPUT_BINARIES has no regular file $binary"
  fi
  dest=$(mktemp -d "${RUNNER_TEMP:?RUNNER_TEMP is not set}/slurm-factory-verified.XXXXXX")
  cp -- "$INPUT_BINARIES/$binary" "$dest/$binary"
  actual=$(sha256_of "$dest/$binary")
  if [ "$actual" != "$expected" ]; then
    rm -rf "$dest"
    die "checksum mismatch for $binary: expected $expected ($sums), got $actual; refusing to run it"
  fi
  chmod 0755 "$dest/$binary"
  log "verified $binary from $INPUT_BINARIES against SHA256SUMS"
  set_output bin_dir "$dest"
  exit 0
fi

build_from_source() {
  need cargo "build slurm-factory from source ($1)"
  local target_dir="${CARGO_TARGET_DIR:-$root/target}"
  echo "::group::cargo build --locked --release"
  log "reason: $1"
  (cd "$root" && cargo build --locked --release --bins)
  echo "::endgroup::"
  [ -x "$target_dir/release/$binary" ] || die "cargo build finished but $target_dir/release/$binary does not exist"
  set_output bin_dir "$target_dir/release"
  exit 0
}

# 3. This repository's plan jobs.
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

# 4. Prebuilt, verified release asset.
need sha256sum "verify $asset"
need tar "unpack $asset"
dest="${RUNNER_TEMP:?RUNNER_TEMP is not set}/slurm-factory-v${version}-${target}"
kept="$dest.tar.gz"
if [ -f "$kept" ] && [ -f "$dest/$binary" ] && [ "$(sha256_of "$kept")" = "$expected" ]; then
  # Re-verify the cached binary's own bytes against the copy inside the verified asset.
  inside=$(tar -xzOf "$kept" -- "$binary" 2> /dev/null | sha256sum | cut -d ' ' -f 1)
  if [ "$(sha256_of "$dest/$binary")" = "$inside" ] && [ -x "$dest/$binary" ]; then
    log "reusing $binary from $asset in $dest (SHA-256 re-verified)"
    set_output bin_dir "$dest"
    exit 0
  fi
  log "the cached $dest/$binary does not match $asset: installing it again"
fi
need curl "download $asset"
repository="${SF_ACTION_REPOSITORY:-}"
[ -n "$repository" ] || repository="${GITHUB_ACTION_REPOSITORY:-vantagecompute/slurm-factory}"
case "$repository" in
  */*) ;;
  *) die "cannot tell which repository to download $asset from (got '$repository')" ;;
esac
server="${GITHUB_SERVER_URL:-https://github.com}"
base="$server/$repository/releases/download"
proto='=https'
# SLURM_FACTORY_RELEASE_URL replaces the release download base (<base>/v<version>/<asset>), for a
# mirror of the release assets or a test's release server: https://, or plain http:// only to
# the loopback address. The asset is verified against checksums.txt either way.
if [ -n "${SLURM_FACTORY_RELEASE_URL:-}" ]; then
  base=${SLURM_FACTORY_RELEASE_URL%/}
  case "$base" in
    https://[A-Za-z0-9]*) ;;
    http://127.0.0.1 | http://127.0.0.1:[0-9]* | http://127.0.0.1/* | http://localhost | http://localhost:[0-9]* | http://localhost/*)
      proto='=http'
      ;;
    *) die "SLURM_FACTORY_RELEASE_URL=$base is neither https:// nor http:// on the loopback address (127.0.0.1, localhost)" ;;
  esac
  case "$base" in
    *[!A-Za-z0-9._~:/-]*) die "SLURM_FACTORY_RELEASE_URL=$base contains characters a URL base does not need" ;;
  esac
fi
url="$base/v${version}/$asset"
tmp=$(mktemp -d "${RUNNER_TEMP}/slurm-factory-download.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
log "downloading $url"
curl --proto "$proto" --proto-redir '=https' --tlsv1.2 -fsSL --retry 3 -o "$tmp/$asset" "$url" \
  || die "cannot download $url"
actual=$(sha256_of "$tmp/$asset")
if [ "$actual" != "$expected" ]; then
  die "checksum mismatch for $asset: expected $expected (actions/checksums.txt), got $actual; refusing to run it"
fi
rm -rf "$dest" "$kept"
mkdir -p "$dest"
tar -xzf "$tmp/$asset" -C "$dest"
[ -x "$dest/$binary" ] || die "$asset does not contain $binary"
mv -- "$tmp/$asset" "$kept"
log "installed verified $asset"
set_output bin_dir "$dest"
