# Contributor tasks for slurm-factory. `just --list` shows them.
#
# The whole suite, exactly as CI runs it, is `scripts/test`: it installs the test tools and
# needs no `just`. These recipes are the quick loops while working on a change.

set shell := ["bash", "-euo", "pipefail", "-c"]

# Test tools (moto_server, zizmor, check-jsonschema, act, aws) live in this venv; see
# scripts/install-test-deps.sh.
export SLURM_FACTORY_VENV := env_var_or_default("SLURM_FACTORY_VENV", justfile_directory() / ".venv")

# Lint, then unit and integration tests.
default: lint unit integration

# Formatting, clippy with warnings as errors, and spelling (.codespellrc).
lint:
    cargo fmt --all --check
    cargo clippy --all-targets --locked -- -D warnings
    codespell

# The library's unit tests and doc tests (fast, no external tools).
unit *ARGS:
    if command -v cargo-nextest >/dev/null; then cargo nextest run --lib --locked {{ ARGS }}; else cargo test --lib --locked {{ ARGS }}; fi
    cargo test --doc --locked

# Real binaries, moto_server, GnuPG, Docker and the linters; e.g. `just integration hostile`.
# The integration tests in tests/*.rs; extra arguments go to the test runner.
integration *ARGS:
    if command -v cargo-nextest >/dev/null; then cargo nextest run --test '*' --locked {{ ARGS }}; else cargo test --test '*' --locked {{ ARGS }}; fi

# Benchmarks against the peer tools (gpg, aws s3 sync), measured in the same run. Installs the
# benchmark-only tools first (s3s-fs, the second S3 server of the upload bench).
bench *ARGS:
    SLURM_FACTORY_BENCH_TOOLS=1 scripts/install-test-deps.sh
    cargo bench --locked {{ ARGS }}

# Install the test tools and run everything CI runs.
test:
    scripts/test
