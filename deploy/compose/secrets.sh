#!/bin/sh
# compose.yaml's secrets, made per deployment and never shipped, as deploy/base's Secrets are for a
# cluster (docs/deployment.md, "Secrets"): random values made at the stack's first start and kept in the
# named volume `secrets`, so a later `up` (and the database, which takes its password at its first start
# only) finds the same ones. Every container that needs one runs this before the image's own entrypoint:
#
#   secrets.sh COMMAND...    with SECRETS="ENV_VAR=file ..." (the values it gets) in its environment
#
# Each value reaches COMMAND as the environment variable named; "$(ENV_VAR)" inside FEEDBACK_DB is
# replaced by it, as Kubernetes fills in deploy/base/kubernetes.yaml's. The database container makes them:
# it starts as root (its entrypoint then drops to the postgres user, as the official image's does), the
# one container that may write to the volume; the others (the web app, uid 10001) wait for them.
set -eu
store=/run/compose-secrets

if [ "$(id -u)" = 0 ]; then
    for name in postgres-password ticket-key; do
        if [ ! -s "$store/$name" ]; then
            # 32 random bytes in hex: fit for a URL (the password is part of FEEDBACK_DB), and the ticket
            # key's 32 characters at least. Written aside and moved: a value is whole or absent.
            od -An -N32 -tx1 /dev/urandom | tr -d ' \n' > "$store/.$name"
            chmod 0444 "$store/.$name"  # read by the web app's user too; only these containers see it
            mv "$store/.$name" "$store/$name"
            echo "secrets.sh: made $name (volume secrets)"
        fi
    done
fi

for pair in ${SECRETS:-}; do
    var=${pair%%=*} file=$store/${pair#*=}
    waited=0
    until [ -s "$file" ]; do  # made by the database container, which compose starts first
        if [ "$waited" -ge 120 ]; then
            echo "secrets.sh: $file did not appear in 120 s: is the postgres service running?" >&2
            exit 1
        fi
        sleep 1
        waited=$((waited + 1))
    done
    value=$(cat "$file")
    export "$var=$value"
    if [ -n "${FEEDBACK_DB:-}" ]; then  # hex values: nothing in them that sed would read as special
        FEEDBACK_DB=$(printf '%s' "$FEEDBACK_DB" | sed "s/\$($var)/$value/g")
    fi
done
exec "$@"
