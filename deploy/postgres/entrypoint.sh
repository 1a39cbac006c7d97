#!/bin/sh
# The official postgres image's entrypoint, as far as deploy/ uses it (deploy/postgres/Containerfile):
# on an empty $PGDATA, initdb with superuser $POSTGRES_USER (default postgres) and password
# $POSTGRES_PASSWORD (required), password (scram-sha-256) logins over TCP, trust on the local socket,
# and database $POSTGRES_DB (default: the user's name); then the server in the foreground on port 5432.
# PGDATA must be a directory below the volume's mount point (deploy/postgres.yaml), as the official image
# advises: initdb wants an empty directory, and a fresh volume may hold lost+found.
set -eu
if [ "${1:-}" != postgres ]; then
    exec "$@"
fi
if [ "$(id -u)" = 0 ]; then
    # Root (no runAsUser): make the data directory and the one it is made in the postgres user's, then
    # run as that user.
    mkdir -p "$PGDATA"
    chown postgres:postgres "$(dirname "$PGDATA")" "$PGDATA"
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    : "${POSTGRES_PASSWORD:?is required (the official image refuses to start without it too)}"
    user="${POSTGRES_USER:-postgres}"
    db="${POSTGRES_DB:-$user}"
    # Made beside $PGDATA and moved into place once complete: a first start that dies half-way leaves
    # no half-made cluster that the next start would take for a finished one.
    init="$PGDATA.init"
    rm -rf "$init"
    pwfile="$(mktemp)"
    printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
    initdb -D "$init" --username="$user" --pwfile="$pwfile" --auth-local=trust \
        --auth-host=scram-sha-256 --encoding=UTF8 >/dev/null
    rm -f "$pwfile"
    echo "host all all all scram-sha-256" >> "$init/pg_hba.conf"
    # A server on the socket alone while the database is made, so no client connects half-way.
    pg_ctl -D "$init" -o "-c listen_addresses=''" -w start
    if [ "$db" != postgres ]; then
        createdb --username="$user" "$db"
    fi
    pg_ctl -D "$init" -m fast -w stop
    rmdir "$PGDATA" 2>/dev/null || true
    mv "$init" "$PGDATA"
    echo "initialized database $db (user $user) in $PGDATA"
fi
exec "$@"
