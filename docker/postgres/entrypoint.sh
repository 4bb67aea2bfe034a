#!/bin/sh
# First start: initdb with the role sluice (SCRAM password from
# POSTGRES_PASSWORD) and the database sluice_catalog; then run the server.
set -eu
: "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}"
BIN=/usr/lib/postgresql/15/bin
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    pw="$(mktemp)"
    printf '%s' "$POSTGRES_PASSWORD" >"$pw"
    "$BIN/initdb" -D "$PGDATA" -U sluice --pwfile="$pw" --auth=scram-sha-256 -E UTF8 --locale=C >/dev/null
    rm -f "$pw"
    printf 'host all all 0.0.0.0/0 scram-sha-256\nhost all all ::/0 scram-sha-256\n' >>"$PGDATA/pg_hba.conf"
    echo "CREATE DATABASE sluice_catalog" | "$BIN/postgres" --single -D "$PGDATA" postgres >/dev/null
fi
exec "$BIN/postgres" -D "$PGDATA" -c listen_addresses="${PG_LISTEN:-*}" -p "$PGPORT" -k /tmp
