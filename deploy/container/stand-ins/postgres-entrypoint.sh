#!/bin/bash
# The part of the official entrypoint compose relies on: POSTGRES_USER / POSTGRES_PASSWORD /
# POSTGRES_DB honoured on first start (initdb), then the scripts of /docker-entrypoint-initdb.d
# (*.sh run, *.sql applied to POSTGRES_DB, in name order: compose's database roles), scram auth
# from other hosts, then postgres.
set -euo pipefail
: "${POSTGRES_USER:=postgres}" "${POSTGRES_DB:=$POSTGRES_USER}"
as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }
if [[ $1 == postgres ]]; then
    chown -R postgres:postgres "$PGDATA" /var/run/postgresql
    chmod 0700 "$PGDATA"
    if [[ ! -s $PGDATA/PG_VERSION ]]; then
        pwfile=$(mktemp)
        printf '%s\n' "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is required}" >"$pwfile"
        chown postgres "$pwfile"
        as_postgres initdb --username="$POSTGRES_USER" --pwfile="$pwfile" \
            --auth-local=trust --auth-host=scram-sha-256 >/dev/null
        rm -f "$pwfile"
        echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
        as_postgres pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
        if [[ $POSTGRES_DB != postgres ]]; then
            as_postgres psql -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d postgres \
                -c "CREATE DATABASE \"$POSTGRES_DB\"" >/dev/null
        fi
        for script in /docker-entrypoint-initdb.d/*; do
            case $script in
                *.sh) as_postgres bash "$script" ;;
                *.sql) as_postgres psql -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" \
                    -d "$POSTGRES_DB" -f "$script" >/dev/null ;;
            esac
        done
        as_postgres pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
    fi
    shift
    exec setpriv --reuid=postgres --regid=postgres --init-groups \
        postgres -c listen_addresses='*' "$@"
fi
exec "$@"
