#!/usr/bin/env bash
# The whole test suite: installs what the tests need (Debian packages, a
# Python venv), checks formatting and lints, builds, runs the Rust tests with
# nextest and the real-client tests with pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/sluice-target}"
VENV="${SLUICE_VENV:-/var/tmp/sluice-venv}"
step() { printf '\n==> %s (%s)\n' "$*" "$(date +%T)"; }

step "system packages"
need=()
command -v psql >/dev/null || need+=(postgresql-client)
command -v cc >/dev/null || need+=(gcc)
# psqlODBC and unixODBC (isql, libodbc for pyodbc): the ODBC driver tests.
odbcinst -q -d 2>/dev/null | grep -q "PostgreSQL Unicode" || need+=(odbc-postgresql unixodbc)
# pgjdbc on the JDK, and a reference PostgreSQL server (conformance/).
[ -f /usr/share/java/postgresql.jar ] || need+=(libpostgresql-jdbc-java)
command -v java >/dev/null || need+=(default-jre-headless)
[ -x /usr/lib/postgresql/15/bin/initdb ] || need+=(postgresql)
# Headless Chromium and its driver: the web UI test (Selenium).
[ -x /usr/bin/chromedriver ] || need+=(chromium chromium-driver)
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
command -v cargo-nextest >/dev/null || cargo install --locked cargo-nextest

step "python venv"
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install -q --disable-pip-version-check -r tests/requirements.txt
# flightsql-dbapi pins SQLAlchemy < 2 for its optional dialect only; its
# DB-API client needs pyarrow and protobuf, both already installed.
"$VENV/bin/pip" install -q --disable-pip-version-check --no-deps "flightsql-dbapi==0.2.2"
# The Hive Metastore the catalog tests start: pyspark's jars (metastore 2.3, Derby).
SLUICE_HMS_JARS="$("$VENV/bin/python" -c 'import os, pyspark; print(os.path.join(os.path.dirname(pyspark.__file__), "jars"))')"
export SLUICE_HMS_JARS

step "azurite (Azure Blob emulator, npm)"
AZURITE_DIR="${SLUICE_AZURITE_DIR:-/var/tmp/sluice-azurite}"
if [ ! -x "$AZURITE_DIR/node_modules/.bin/azurite-blob" ]; then
    npm install --prefix "$AZURITE_DIR" --no-audit --no-fund --loglevel=error azurite@3
fi
export SLUICE_AZURITE_BIN="$AZURITE_DIR/node_modules/.bin/azurite-blob"

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "build binaries"
cargo build --workspace --all-targets

step "rust tests (nextest)"
cargo nextest run --workspace --no-fail-fast

step "vendored Ballista crates: their tests and our patches' regression tests (nextest)"
# third_party/ is a workspace of its own (third_party/README.md).
cargo nextest run --manifest-path third_party/Cargo.toml --no-fail-fast \
    -p ballista-scheduler -p ballista-executor --no-default-features --lib

step "Helm chart: lint and schema validation"
bash tests/helm.sh "$VENV"

step "container image and docker-compose cluster"
bash tests/compose.sh "$VENV"

step "real-client tests (pytest)"
export SLUICE_GATEWAY_BIN="$CARGO_TARGET_DIR/debug/sluice-gateway"
"$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/python conformance "$@"
